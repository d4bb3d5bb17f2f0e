// Package memlimit gives `cairn model push` and `cairn model pull` a soft
// memory limit, and `cairn serve` the one --memory-limit asks for (by
// default derived from its cgroup's limit), unless the user chose one with
// GOMEMLIMIT.
package memlimit
