package scim_test

import (
	"strconv"
	"time"
)

var farFuture = time.Now().Add(24 * time.Hour)

func itoa(i int) string { return strconv.Itoa(i) }
