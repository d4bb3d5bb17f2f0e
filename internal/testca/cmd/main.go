// Command cmd writes a throwaway CA and key pairs for a local cairn serve
// (make demo): go run ./internal/testca/cmd DIR writes DIR/ca.pem,
// cert.pem, key.pem, client-cert.pem and client-key.pem.
package main

import (
	"fmt"
	"os"

	"github.com/cairn-dev/cairn/internal/testca"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: go run ./internal/testca/cmd DIR")
		os.Exit(2)
	}
	f, err := testca.WriteFiles(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(f.CA)
}
