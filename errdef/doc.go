// Package errdef holds cairn's few sentinel errors, tested with errors.Is
// across packages; it imports nothing.
package errdef
