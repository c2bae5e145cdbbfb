package store_test

import (
	"github.com/gatehousedb/gatehouse/internal/api"
	"github.com/gatehousedb/gatehouse/internal/store"
)

// The real check lives in internal/controlplane, which wires the two; this one catches drift while
// the store is worked on.
var _ api.Store = (*store.Store)(nil)
