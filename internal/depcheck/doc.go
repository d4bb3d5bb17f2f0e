// Package depcheck holds a test that fails when a cairn package imports what
// the data flow of DESIGN.md forbids (a later stage calling back into an
// earlier one, or anything reaching into cmd/).
package depcheck
