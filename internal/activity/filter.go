package activity

import (
	"encoding/json"
	"time"
)

// Filter selects records of the activity trail the control plane keeps. Zero fields select
// everything; string fields match exactly, except Object (a prefix of an object name, so
// "public.salaries" also finds "public.salaries.salary") and Text (a case-insensitive substring
// of the statement).
type Filter struct {
	Since, Until   time.Time
	User           string
	Repository     string
	RepositoryUser string
	Type           string
	Kind           string
	Decision       string
	Object         string
	Text           string
	SidecarID      string
	InstanceID     string
	// After continues a listing after this record (paging).
	After *Cursor
	// Limit bounds the number of records; 0 means no bound.
	Limit int
	// Chain orders by instance and seq (for Verify) instead of by time.
	Chain bool
}

// Cursor is a place in the trail ordered by time.
type Cursor struct {
	Time       time.Time `json:"t"`
	InstanceID string    `json:"i"`
	Seq        uint64    `json:"s"`
}

// Stored is a record as the control plane keeps it: its JSON exactly as received (Raw) and
// decoded. End is the statement.end record completing a statement record, when listed with it.
type Stored struct {
	Record Record
	Raw    json.RawMessage
	End    *Record
}
