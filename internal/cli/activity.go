package cli

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
)

// activityRecord is an activity record as the API lists it (package activity's Record).
type activityRecord struct {
	Seq            uint64   `json:"seq"`
	Type           string   `json:"type"`
	Time           string   `json:"time"`
	SidecarID      string   `json:"sidecar_id,omitempty"`
	InstanceID     string   `json:"instance_id,omitempty"`
	SessionID      string   `json:"session_id,omitempty"`
	User           string   `json:"user"`
	Groups         []string `json:"groups,omitempty"`
	Repository     string   `json:"repository"`
	RepositoryUser string   `json:"repository_user"`
	ClientAddr     string   `json:"client_addr,omitempty"`
	Application    string   `json:"application,omitempty"`
	TLS            bool     `json:"tls,omitempty"`
	Outcome        string   `json:"outcome,omitempty"`
	Reason         string   `json:"reason,omitempty"`
	Statement      string   `json:"statement"`
	Kind           string   `json:"kind"`
	Objects        []string `json:"objects,omitempty"`
	Params         []string `json:"params,omitempty"` // only for repositories with record_parameters
	Decision       string   `json:"decision"`
	Rule           string   `json:"rule"`
	Mode           string   `json:"mode,omitempty"`
	Rows           int64    `json:"rows,omitempty"`
	DurationMS     float64  `json:"duration_ms,omitempty"`
	ErrorCode      string   `json:"error_code,omitempty"`
	BytesIn        int64    `json:"bytes_in,omitempty"`  // session.end: from the client
	BytesOut       int64    `json:"bytes_out,omitempty"` // session.end: to the client
}

func newActivityCmd(e *env) *cobra.Command {
	return group("activity", "Read the activity trail: logins, statements and session ends recorded by sidecars",
		activityListCmd(e), activityVerifyCmd(e))
}

func activityListCmd(e *env) *cobra.Command {
	var since, until, user, repo, repoUser, typ, kind, decision, object, text, instance, output string
	var limit int
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List activity records, oldest first",
		Long: `List activity records with filters. --output jsonl prints one JSON object per record (JSON Lines),
for export; a statement record carries its outcome (rows, duration_ms, error_code).`,
		Example: `  gatehouse activity list --since 10m
  gatehouse activity list --since 24h --user alice@example.com --decision deny
  gatehouse activity list --since 7d --repository sales --output jsonl > activity.jsonl`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch output {
			case "table", "json", "jsonl":
			default:
				return usageErrorf("--output must be table, json or jsonl, not %q", output)
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			q := url.Values{}
			for k, v := range map[string]string{"since": since, "until": until, "user": user, "repository": repo,
				"repository_user": repoUser, "type": typ, "kind": kind, "decision": decision, "object": object, "q": text, "instance": instance} {
				if v != "" {
					q.Set(k, v)
				}
			}
			var all []json.RawMessage
			cursor := ""
			for {
				page := 1000
				if limit > 0 {
					page = min(page, limit-len(all))
				}
				q.Set("limit", strconv.Itoa(page))
				if cursor != "" {
					q.Set("cursor", cursor)
				}
				raw, err := c.get(cmd.Context(), path("activity")+"?"+q.Encode())
				if err != nil {
					return err
				}
				var p struct {
					Records    []json.RawMessage `json:"records"`
					NextCursor string            `json:"next_cursor"`
				}
				if err := json.Unmarshal(raw, &p); err != nil {
					return fmt.Errorf("decode activity page: %w", err)
				}
				all = append(all, p.Records...)
				cursor = p.NextCursor
				if cursor == "" || (limit > 0 && len(all) >= limit) {
					break
				}
			}
			switch output {
			case "json":
				b, err := json.MarshalIndent(all, "", "  ")
				if err != nil {
					return err
				}
				if len(all) == 0 {
					b = []byte("[]")
				}
				_, err = fmt.Fprintf(e.Stdout, "%s\n", b)
				return err
			case "jsonl":
				for _, r := range all {
					var v activityRecord
					if err := json.Unmarshal(r, &v); err != nil {
						return err
					}
					b, err := json.Marshal(v)
					if err != nil {
						return err
					}
					fmt.Fprintf(e.Stdout, "%s\n", b)
				}
				return nil
			}
			var rows [][]string
			for _, r := range all {
				var v activityRecord
				if err := json.Unmarshal(r, &v); err != nil {
					return err
				}
				what := v.Statement
				switch v.Type {
				case "session.start":
					what = v.Outcome
					if v.Reason != "" {
						what += ": " + v.Reason
					}
				case "session.end", "statement.end":
					what = v.Reason
				}
				if len(what) > 80 {
					what = what[:77] + "..."
				}
				rows = append(rows, []string{v.Time, v.Type, v.User, v.Repository, v.RepositoryUser, v.Kind, v.Decision, v.Rule, strings.ReplaceAll(what, "\n", " ")})
			}
			return table(e.Stdout, []string{"TIME", "TYPE", "USER", "REPOSITORY", "REPOSITORY USER", "KIND", "DECISION", "RULE", "STATEMENT"}, rows)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&since, "since", "", "only records at or after this time: RFC 3339, or a duration ago like 10m, 24h, 7d")
	fl.StringVar(&until, "until", "", "only records before this time (RFC 3339 or a duration ago)")
	fl.StringVar(&user, "user", "", "only this IdP user's records")
	fl.StringVar(&repo, "repository", "", "only this repository's records")
	fl.StringVar(&repoUser, "repository-user", "", "only this repository user's records")
	fl.StringVar(&typ, "type", "", "only this record type: session.start, statement, statement.end, session.end, spool.dropped")
	fl.StringVar(&kind, "kind", "", "only statements of this kind: select, insert, update, delete, ddl, ...")
	fl.StringVar(&decision, "decision", "", "only statements with this decision: allow or deny")
	fl.StringVar(&object, "object", "", "only statements touching this object (schema.table[.column])")
	fl.StringVar(&text, "query", "", "only statements whose text contains this (case-insensitive)")
	fl.StringVar(&instance, "instance", "", "only this sidecar instance's records")
	fl.IntVar(&limit, "limit", 0, "at most this many records (default: all)")
	fl.StringVarP(&output, "output", "o", "table", "output format: table, json or jsonl (one JSON object per line)")
	return cmd
}

func activityVerifyCmd(e *env) *cobra.Command {
	var since, until, instance string
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Check the activity hash chains: report edited, missing or reordered records",
		Long: `Check the hash chain of each sidecar instance's records in the range. Exits 1 when a record was
edited, deleted or reordered since the sidecar wrote it. Records that a full spool dropped under
drop-oldest are listed as admitted gaps when the sidecar's spool.dropped records account for them
(exit 0), and as problems when nothing does.`,
		Example: `  gatehouse activity verify --since 24h
  gatehouse activity verify --instance 4ZQ...`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			raw, err := c.post(cmd.Context(), path("activity", "verify"), map[string]string{"since": since, "until": until, "instance_id": instance})
			if err != nil {
				return err
			}
			var res struct {
				Records   int  `json:"records"`
				Instances int  `json:"instances"`
				OK        bool `json:"ok"`
				Problems  []struct {
					InstanceID string `json:"instance_id"`
					Seq        uint64 `json:"seq"`
					Kind       string `json:"kind"`
					Detail     string `json:"detail"`
				} `json:"problems"`
				Admitted []struct {
					InstanceID string `json:"instance_id"`
					From       uint64 `json:"from"`
					To         uint64 `json:"to"`
				} `json:"admitted"`
			}
			if err := json.Unmarshal(raw, &res); err != nil {
				return err
			}
			err = e.show(raw, func() error {
				fmt.Fprintf(e.Stdout, "Checked %d records of %d sidecar instances.\n", res.Records, res.Instances)
				for _, g := range res.Admitted {
					fmt.Fprintf(e.Stdout, "Admitted gap: instance %s seq %d to %d (%d records) dropped by a full activity spool (drop-oldest); a spool.dropped record accounts for them.\n",
						g.InstanceID, g.From, g.To, g.To-g.From+1)
				}
				if res.OK {
					fmt.Fprintln(e.Stdout, "OK: every chain is intact.")
					return nil
				}
				var rows [][]string
				for _, p := range res.Problems {
					rows = append(rows, []string{p.InstanceID, strconv.FormatUint(p.Seq, 10), p.Kind, p.Detail})
				}
				return table(e.Stdout, []string{"INSTANCE", "SEQ", "PROBLEM", "DETAIL"}, rows)
			})
			if err == nil && !res.OK {
				return fmt.Errorf("activity verify found %d problems", len(res.Problems))
			}
			return err
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&since, "since", "", "check records from this time (RFC 3339 or a duration ago)")
	fl.StringVar(&until, "until", "", "check records before this time")
	fl.StringVar(&instance, "instance", "", "check only this sidecar instance's chain")
	return cmd
}
