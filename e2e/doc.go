// Package e2e holds end-to-end tests that build the cairn binary and run a
// real `cairn serve` (embedded defaults: SQLite, built-in registry) with a
// local Git repository and several `cairn agent` processes.
package e2e
