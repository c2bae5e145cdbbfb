package activity

import "fmt"

// Problem kinds.
const (
	ProblemEdited     = "edited"      // the record's content does not match its hash
	ProblemBrokenLink = "broken_link" // PrevHash is not the previous record's hash
	ProblemGap        = "gap"         // records are missing and no spool.dropped record admits it
	ProblemReordered  = "reordered"   // a record comes after one with a higher or equal seq
)

// Problem is one finding of Verify.
type Problem struct {
	SidecarID  string `json:"sidecar_id,omitempty"`
	InstanceID string `json:"instance_id"`
	Seq        uint64 `json:"seq"`
	Kind       string `json:"kind"`
	Detail     string `json:"detail"`
}

// AdmittedGap is a range of a chain that is missing and that spool.dropped records admit: the
// sidecar instance's spool was full, its policy was drop-oldest, and it said so in the chain. It
// is a loss of records, not tampering.
type AdmittedGap struct {
	SidecarID  string `json:"sidecar_id,omitempty"`
	InstanceID string `json:"instance_id"`
	From       uint64 `json:"from"`
	To         uint64 `json:"to"`
}

// Verify checks records, in the order they were received, chain by chain (per instance). The first
// record of each chain in the slice is trusted as the start of the range unless its Seq is 1, which
// must have no PrevHash. A gap is admitted when spool.dropped records anywhere in records (with
// intact hashes) cover it exactly, hashes on both sides included.
func Verify(records []Record) []Problem {
	problems, _ := Check(records)
	return problems
}

// Check is Verify that also returns the gaps spool.dropped records admit, in chain order.
func Check(records []Record) (problems []Problem, admittedGaps []AdmittedGap) {
	report := func(r *Record, kind, format string, args ...any) {
		problems = append(problems, Problem{SidecarID: r.SidecarID, InstanceID: r.InstanceID, Seq: r.Seq, Kind: kind, Detail: fmt.Sprintf(format, args...)})
	}

	intact := make([]bool, len(records))
	gaps := map[string]map[uint64][]*Gap{} // instance -> from -> gaps
	for i := range records {
		r := &records[i]
		h, err := ComputeHash(r)
		intact[i] = err == nil && h == r.Hash
		if intact[i] && r.Type == TypeDropped {
			for j := range r.Gaps {
				g := &r.Gaps[j]
				if gaps[g.InstanceID] == nil {
					gaps[g.InstanceID] = map[uint64][]*Gap{}
				}
				gaps[g.InstanceID][g.From] = append(gaps[g.InstanceID][g.From], g)
			}
		}
	}

	last := map[string]*Record{}
	for i := range records {
		r := &records[i]
		if !intact[i] {
			report(r, ProblemEdited, "content does not match hash %s", short(r.Hash))
		}
		prev := last[r.InstanceID]
		if prev == nil {
			if r.Seq == 1 && r.PrevHash != "" {
				report(r, ProblemBrokenLink, "first record of the chain has a previous hash")
			}
			last[r.InstanceID] = r
			continue
		}
		switch {
		case r.Seq <= prev.Seq:
			report(r, ProblemReordered, "seq %d received after seq %d", r.Seq, prev.Seq)
			continue
		case r.Seq == prev.Seq+1:
			if r.PrevHash != prev.Hash {
				report(r, ProblemBrokenLink, "previous hash %s, but seq %d has hash %s", short(r.PrevHash), prev.Seq, short(prev.Hash))
			}
		default:
			if admitted(gaps[r.InstanceID], prev, r) {
				admittedGaps = append(admittedGaps, AdmittedGap{SidecarID: r.SidecarID, InstanceID: r.InstanceID, From: prev.Seq + 1, To: r.Seq - 1})
			} else {
				report(r, ProblemGap, "seq %d to %d missing", prev.Seq+1, r.Seq-1)
			}
		}
		last[r.InstanceID] = r
	}
	return problems, admittedGaps
}

// admitted reports whether gap records cover exactly the records between prev and next: a path of
// gaps, each starting where the last ended, with the hashes on every boundary matching.
func admitted(gaps map[uint64][]*Gap, prev, next *Record) bool {
	var walk func(seq uint64, hash string, depth int) bool
	walk = func(seq uint64, hash string, depth int) bool {
		if seq == next.Seq {
			return hash == next.PrevHash
		}
		if depth > 64 {
			return false
		}
		for _, g := range gaps[seq] {
			if g.PrevHash == hash && g.To >= g.From && g.To < next.Seq && walk(g.To+1, g.LastHash, depth+1) {
				return true
			}
		}
		return false
	}
	return walk(prev.Seq+1, prev.Hash, 0)
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}
