package postgres_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// BenchmarkCopyFromStdin sends rows with COPY FROM STDIN through the engine: the client's
// CopyData messages are the one bulk stream the client→upstream direction carries.
func BenchmarkCopyFromStdin(b *testing.B) {
	sc := startProxy(b, proxyOptions{logger: slog.New(slog.NewJSONHandler(io.Discard, nil))})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, sc.connString("scram_user", aliceToken, ""))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "create temp table c (id int, v text)"); err != nil {
		b.Fatal(err)
	}
	const n = 50000
	rows := make([][]any, n)
	size := 0
	for i := range rows {
		v := fmt.Sprintf("row %d with some text to make it longer", i)
		rows[i] = []any{int32(i), v}
		size += 4 + len(v) + 10
	}
	b.SetBytes(int64(size))
	for b.Loop() {
		if _, err := conn.Exec(ctx, "truncate c"); err != nil {
			b.Fatal(err)
		}
		got, err := conn.CopyFrom(ctx, pgx.Identifier{"c"}, []string{"id", "v"}, pgx.CopyFromRows(rows))
		if err != nil || got != n {
			b.Fatalf("CopyFrom = %d, %v", got, err)
		}
	}
}
