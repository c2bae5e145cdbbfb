package mysql

import "github.com/gatehousedb/gatehouse/internal/policy"

// NewCache returns a classification cache over Classify, with the default limits: the hot path
// parses each distinct statement text once, and each shape of statement (see Shape) once when
// clients write values inline.
func NewCache() *policy.Cache { return &policy.Cache{Classifier: Classify, Shape: Shape} }
