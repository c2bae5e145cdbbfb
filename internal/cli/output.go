package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// json reports whether --output json was asked for.
func (e *env) json() bool { return e.output == "json" }

// printJSON prints an API answer as indented JSON, unchanged otherwise.
func (e *env) printJSON(raw json.RawMessage) error {
	var b bytes.Buffer
	if len(bytes.TrimSpace(raw)) == 0 {
		raw = json.RawMessage("{}")
	}
	if err := json.Indent(&b, raw, "", "  "); err != nil {
		return fmt.Errorf("format answer: %w", err)
	}
	b.WriteByte('\n')
	_, err := e.Stdout.Write(b.Bytes())
	return err
}

// table prints rows under a header, aligned in columns.
func table(w io.Writer, header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		for i := range r {
			if r[i] == "" {
				r[i] = "-"
			}
		}
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

// fields prints one object as "Label:  value" lines.
func fields(w io.Writer, kv ...string) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for i := 0; i+1 < len(kv); i += 2 {
		v := kv[i+1]
		if v == "" {
			v = "-"
		}
		fmt.Fprintf(tw, "%s:\t%s\n", kv[i], v)
	}
	return tw.Flush()
}

// show prints raw as JSON with --output json, else calls the table printer.
func (e *env) show(raw json.RawMessage, printTable func() error) error {
	if e.json() {
		return e.printJSON(raw)
	}
	return printTable()
}

// done prints a one-line confirmation for a change without an object to show (table output), or
// the answer (JSON output; {} if the answer was empty).
func (e *env) done(raw json.RawMessage, format string, args ...any) error {
	if e.json() {
		return e.printJSON(raw)
	}
	_, err := fmt.Fprintf(e.Stdout, format+"\n", args...)
	return err
}

func ts(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.Local().Format(time.RFC3339)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func itoa(i int) string { return fmt.Sprint(i) }
