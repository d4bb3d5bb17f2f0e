// Package tlsfiles builds the TLS configurations of cairn serve, its agents
// and its CLI from PEM files: a server certificate reloaded when its files
// change, an optional client CA, and client trust in a private CA.
package tlsfiles
