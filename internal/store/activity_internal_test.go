package store

import (
	"encoding/json"
	"testing"
)

// objectsJSON must store what json.Marshal gave before it, byte for byte.
func TestObjectsJSON(t *testing.T) {
	for _, objects := range [][]string{
		nil,
		{},
		{""},
		{"public.customers", "public.customers.id"},
		{`public."we<ird>"`, "a&b", "caf\u00e9", "tab\there", "\u2028", "bad\xffutf8", `back\slash`},
	} {
		want, _ := json.Marshal(objects)
		if got := objectsJSON(objects); got != string(want) {
			t.Errorf("objectsJSON(%q) = %s, want %s", objects, got, want)
		}
	}
}
