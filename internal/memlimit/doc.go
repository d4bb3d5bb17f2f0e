// Package memlimit gives `cairn model push` and `cairn model pull` a soft
// memory limit unless the user chose one with GOMEMLIMIT.
package memlimit
