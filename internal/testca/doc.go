// Package testca makes a throwaway certificate authority and the key pairs
// it signs (ECDSA P-256) for tests, the e2e harness and the demo.
package testca
