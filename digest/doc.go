// Package digest is cairn's one content digest: sha256:<64 lower-case hex>,
// with its parsing, its short form for messages and its storage key. It
// imports only the standard library.
package digest
