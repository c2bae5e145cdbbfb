package mysql

import "github.com/gatehousedb/gatehouse/internal/policy"

// NewCache returns a classification cache over Classify, with the default limits: the hot path
// parses each distinct statement text once.
func NewCache() *policy.Cache { return &policy.Cache{Classifier: Classify} }
