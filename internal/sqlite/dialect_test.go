package sqlite

import (
	"testing"
	"time"
)

func TestTranslate(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`SELECT 1`, `SELECT 1`},
		{`SELECT id FROM t WHERE a = $1 AND b = $12`, `SELECT id FROM t WHERE a = ?1 AND b = ?12`},
		{`CASE WHEN $1::boolean THEN $2::bytea ELSE x END`, `CASE WHEN ?1 THEN ?2 ELSE x END`},
		{`SELECT DISTINCT f, $2::timestamptz FROM t`, `SELECT DISTINCT f, ?2 FROM t`},
		{`SELECT name FROM t ORDER BY name COLLATE "C" DESC`, `SELECT name FROM t ORDER BY name DESC`},
		{`ORDER BY a COLLATE "C", b COLLATE "C"`, `ORDER BY a, b`},
		{`x = 'a:b'`, `x = 'a:b'`},
	} {
		if got := translate(c.in); got != c.want {
			t.Errorf("translate(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestTimeArgs(t *testing.T) {
	at := time.Date(2030, 1, 2, 3, 4, 5, 6789, time.FixedZone("X", 3600))
	args := []any{"s", at, nil, int64(1)}
	got := timeArgs(args)
	if got[1] != "2030-01-02T02:04:05.000006Z" || got[0] != "s" || got[2] != nil || got[3] != int64(1) {
		t.Fatalf("timeArgs = %#v", got)
	}
	if args[1] != at {
		t.Fatal("timeArgs changed its argument")
	}
	plain := []any{"a", 1}
	if got := timeArgs(plain); &got[0] != &plain[0] {
		t.Error("timeArgs copied arguments without a time")
	}
}
