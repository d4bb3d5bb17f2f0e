// Package history keeps what the fleet reported over time: per-target metric
// series (CPU, memory, temperature, disk free, uptime, error rate, latency,
// drift) downsampled to 1-minute points for 48 hours and 1-hour points for 90
// days, and each target's online sessions, from which it computes uptime per
// target and for the fleet over a window. Reports are aggregated in memory and
// written in one transaction per flush, in the state database (SQLite or
// PostgreSQL through internal/sqldb).
package history
