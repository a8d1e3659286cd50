// Package bench is the load and chaos harness behind 'tokenkeeper bench':
//
//   - Refresh measures the refresher: N credentials on one broker in this
//     process, the share of refreshes made before the token they replace
//     expired, provider calls per token, latency and memory (refresh.go).
//   - Scale seeds up to a million credentials directly in the store, in
//     steady state (expiries spread over one refresh period), restarts the
//     broker on them and measures refreshes, lag, memory, start-up, read
//     latency with and without refresh load, database growth and bytes
//     written per refresh (scale.go).
//   - Read measures the token read path over loopback keep-alive
//     connections against a bare net/http handler (read.go).
//   - Chaos runs several 'tokenkeeper serve' replicas as subprocesses on one
//     PostgreSQL database, kills and restarts them (and optionally the
//     database) while reading tokens, then checks the store against the test
//     provider's own records: reuse detections, lost credentials, expired or
//     revoked tokens served, refreshes cut between answer and commit
//     (chaos.go, chaos_load.go, records.go, report.go).
//
// Shared helpers live beside them: the databases a run uses (database.go),
// process control of the replicas (proc.go), statistics (stats.go) and a
// small client of the broker's API (api.go).
//
// The package does not know how the program around it opens a store or
// starts a broker: the caller passes a Wiring. The chaos run starts the
// tokenkeeper binary named in ChaosConfig.Binary; it never assumes that the
// running program is that binary. Runs are independent (each has its own
// database or schema, ports and provider) and may be started from any
// goroutine, but a benchmark measures best alone: peak RSS is the whole
// process's. Progress goes to a caller-supplied Logf, one line per call, and
// results come back as report structs that print themselves as text
// (WriteText) and JSON.
package bench
