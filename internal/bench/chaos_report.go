package bench

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// ChaosReport is the result of a Chaos run. The command prints it as a
// table (WriteText) ending with its JSON on one line; the JSON field names
// are stable.
type ChaosReport struct {
	Replicas        int      `json:"replicas"`
	Credentials     int      `json:"credentials"`
	Lifetime        Duration `json:"lifetime"`
	Duration        Duration `json:"duration"`
	KillEvery       Duration `json:"kill_every"`
	Signal          string   `json:"signal"` // SIGTERM or SIGKILL
	Grace           Duration `json:"grace"`
	DBRestartEvery  Duration `json:"db_restart_every"`
	RefreshLead     Duration `json:"refresh_lead"`
	ProviderTimeout Duration `json:"provider_timeout"`
	Lease           Duration `json:"lease"`
	LeadCoversLease bool     `json:"lead_covers_lease"`

	Kills              int64   `json:"kills"`
	KillsEscalated     int64   `json:"kills_escalated_to_sigkill"`
	UnexpectedExits    int64   `json:"unexpected_exits"`
	RestartP50Seconds  float64 `json:"restart_p50_seconds"`
	RestartMaxSeconds  float64 `json:"restart_max_seconds"`
	DBRestarts         int     `json:"db_restarts"`
	DBRestartFailures  int64   `json:"db_restart_failures"`
	DBOutageMaxSeconds float64 `json:"db_outage_max_seconds"`
	DBResumeMaxSeconds float64 `json:"db_refresh_resume_max_seconds"`
	DBNotResumed       int64   `json:"db_restarts_not_resumed"`

	Reads                     int64          `json:"reads"`
	ReadsOK                   int64          `json:"reads_ok"`
	ReadP50MS                 float64        `json:"read_p50_ms"`
	ReadP99MS                 float64        `json:"read_p99_ms"`
	FailedReadsKilledReplica  int            `json:"failed_reads_killed_replica"`
	FailedReadsDBRestart      int            `json:"failed_reads_db_restart"`
	FailedReadsLostCredential int            `json:"failed_reads_lost_credential"`
	FailedReadsOther          int            `json:"failed_reads_other"`
	FailedReadsOtherCauses    map[string]int `json:"failed_reads_other_causes"`
	ExpiredServed             int            `json:"expired_served"`
	RevokedServed             int            `json:"revoked_served"`
	UnknownServed             int            `json:"unknown_served"`
	RejectedByResource        int64          `json:"resource_rejected"`
	ResourceCalls             int64          `json:"resource_calls"`
	BadServedLostCredentials  int            `json:"bad_served_for_lost_credentials"`

	ReuseDetections  int `json:"reuse_detections"`
	GraceReuses      int `json:"grace_reuses"`
	MaxPresentations int `json:"max_presentations"`

	CredentialsLost    int            `json:"credentials_lost"`
	NeedsReauth        int            `json:"needs_reauth"`
	FamiliesRevoked    int            `json:"families_revoked"`
	StaleRefreshTokens int            `json:"stale_refresh_tokens"`
	Statuses           map[string]int `json:"statuses"`
	UnexplainedLosses  int            `json:"unexplained_losses"`
	UnexplainedReuses  int            `json:"unexplained_reuses"`

	UncommittedAnswers       int     `json:"uncommitted_answers"`
	UncommittedByEvents      int     `json:"uncommitted_answers_by_events"`
	MethodsDisagree          int     `json:"methods_disagree"`
	EventsTruncated          int     `json:"events_truncated"`
	FencedAnswers            int     `json:"fenced_answers"`
	CutRefreshes             int     `json:"cut_refreshes"`
	CredentialsWithCuts      int     `json:"credentials_with_cuts"`
	ProviderRefreshCalls     int     `json:"provider_refresh_calls"`
	ProviderCallsPerLifetime float64 `json:"provider_calls_per_credential_per_lifetime"`
	SecretsInLogs            int     `json:"secrets_in_logs"`

	Notes      []string `json:"notes"`
	Violations []string `json:"violations"` // the failed checks; empty when Pass
	Pass       bool     `json:"pass"`
}

// judge lists the failed checks of the acceptance for the run's mode: with
// SIGTERM or a grace period, any reuse detection or loss; always, a bad
// token served for a credential not lost, an unexplained loss or reuse, a
// replica that exited by itself, a secret in a log, and (with database
// restarts) restarts that failed or after which refreshes did not resume.
func (rep *ChaosReport) judge() {
	rep.Violations = []string{}
	v := func(format string, args ...any) {
		rep.Violations = append(rep.Violations, fmt.Sprintf(format, args...))
	}
	if n := rep.ExpiredServed + rep.RevokedServed + rep.UnknownServed - rep.BadServedLostCredentials; n > 0 {
		v("%d expired, revoked or unknown tokens served for credentials not lost", n)
	}
	if rep.UnexplainedLosses > 0 {
		v("%d credentials lost without any refresh cut between answer and commit", rep.UnexplainedLosses)
	}
	if rep.UnexplainedReuses > 0 {
		v("%d reuse detections more than credentials with a cut refresh", rep.UnexplainedReuses)
	}
	if rep.UnexpectedExits > 0 {
		v("%d replicas exited by themselves", rep.UnexpectedExits)
	}
	if rep.SecretsInLogs > 0 {
		v("%d log lines hold a secret", rep.SecretsInLogs)
	}
	if rep.Signal == "SIGTERM" || rep.Grace > 0 {
		if rep.ReuseDetections > 0 {
			v("%d reuse detections outside the grace period", rep.ReuseDetections)
		}
		if rep.CredentialsLost > 0 {
			v("%d credentials lost", rep.CredentialsLost)
		}
	}
	if rep.DBRestartEvery > 0 {
		if rep.DBRestartFailures > 0 {
			v("%d database restarts failed", rep.DBRestartFailures)
		}
		if rep.DBNotResumed > 0 {
			v("refreshes did not resume after %d database restarts", rep.DBNotResumed)
		}
	}
	rep.Pass = len(rep.Violations) == 0
}

// WriteText prints the human-readable table (without the JSON line).
func (rep *ChaosReport) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "bench chaos: %d replicas, %d credentials, lifetime %s, %s, kill every %s with %s, %s\n",
		rep.Replicas, rep.Credentials, rep.Lifetime, rep.Duration, rep.KillEvery, rep.Signal, providerDesc(rep.Grace))
	fmt.Fprintf(tw, "  refresh lead\t%s (lease %s = provider timeout %s + 5s; read leeway %s)\n", rep.RefreshLead, rep.Lease, rep.ProviderTimeout, readLeeway(time.Duration(rep.Lifetime)))
	fmt.Fprintf(tw, "  kills\t%d (restart p50 %.2fs, max %.2fs; %d escalated to SIGKILL; %d replicas exited by themselves)\n",
		rep.Kills, rep.RestartP50Seconds, rep.RestartMaxSeconds, rep.KillsEscalated, rep.UnexpectedExits)
	if rep.DBRestartEvery > 0 {
		fmt.Fprintf(tw, "  database restarts\t%d (every %s; %d failed; down at most %.2fs; refreshes resumed at most %.2fs after it answered; %d did not resume)\n",
			rep.DBRestarts, rep.DBRestartEvery, rep.DBRestartFailures, rep.DBOutageMaxSeconds, rep.DBResumeMaxSeconds, rep.DBNotResumed)
	}
	fmt.Fprintf(tw, "  reads\t%d, %d with a token (p50 %.1fms, p99 %.1fms)\n", rep.Reads, rep.ReadsOK, rep.ReadP50MS, rep.ReadP99MS)
	fmt.Fprintf(tw, "  failed reads\t%d to a killed or restarting replica, %d during a database restart, %d of lost credentials, %d others\n",
		rep.FailedReadsKilledReplica, rep.FailedReadsDBRestart, rep.FailedReadsLostCredential, rep.FailedReadsOther)
	if rep.FailedReadsOther > 0 {
		fmt.Fprintf(tw, "  other failed reads by cause\t%s\n", formatCounts(rep.FailedReadsOtherCauses))
	}
	fmt.Fprintf(tw, "  tokens served expired / revoked / unknown\t%d / %d / %d (%d of them for lost credentials)\n",
		rep.ExpiredServed, rep.RevokedServed, rep.UnknownServed, rep.BadServedLostCredentials)
	fmt.Fprintf(tw, "  provider /resource calls\t%d, %d rejected\n", rep.ResourceCalls, rep.RejectedByResource)
	fmt.Fprintf(tw, "  reuse detections\t%d outside the grace period, %d grace reuses; a refresh token presented at most %d times\n",
		rep.ReuseDetections, rep.GraceReuses, rep.MaxPresentations)
	fmt.Fprintf(tw, "  credentials lost\t%d (%d needs_reauth, %d families revoked, %d stored refresh tokens superseded); %d unexplained\n",
		rep.CredentialsLost, rep.NeedsReauth, rep.FamiliesRevoked, rep.StaleRefreshTokens, rep.UnexplainedLosses)
	fmt.Fprintf(tw, "  refreshes cut between answer and commit\t%d on %d credentials (answers never committed: %d by tokens never presented, %d by provider refreshes less store commits; %d discarded by fencing)\n",
		rep.CutRefreshes, rep.CredentialsWithCuts, rep.UncommittedAnswers, rep.UncommittedByEvents, rep.FencedAnswers)
	if rep.MethodsDisagree > 0 || rep.EventsTruncated > 0 {
		fmt.Fprintf(tw, "  count methods\t%d credentials where the two counts disagree, %d with truncated events\n", rep.MethodsDisagree, rep.EventsTruncated)
	}
	fmt.Fprintf(tw, "  provider calls\t%.2f per credential per lifetime (%d refresh requests during the run)\n", rep.ProviderCallsPerLifetime, rep.ProviderRefreshCalls)
	fmt.Fprintf(tw, "  statuses\t%s\n", formatCounts(rep.Statuses))
	fmt.Fprintf(tw, "  secrets in replica logs\t%d\n", rep.SecretsInLogs)
	for _, n := range rep.Notes {
		fmt.Fprintf(tw, "  note\t%s\n", n)
	}
	verdict := "PASS"
	if !rep.Pass {
		verdict = "FAIL: " + strings.Join(rep.Violations, "; ")
	}
	fmt.Fprintf(tw, "  verdict\t%s\n", verdict)
	return tw.Flush()
}

// Err returns nil when the run passed, else an error listing the failed
// checks.
func (rep *ChaosReport) Err() error {
	if len(rep.Violations) == 0 {
		return nil
	}
	return fmt.Errorf("bench chaos: %d checks failed: %s", len(rep.Violations), strings.Join(rep.Violations, "; "))
}
