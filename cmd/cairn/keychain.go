package main

import (
	"net"
	"net/url"
	"os"

	"github.com/google/go-containerregistry/pkg/authn"
)

// cairnKeychain resolves registry credentials as Docker does (the Docker
// config, credential helpers) and, when that has none, gives cairn's
// built-in registry the admin token as the Basic password: for a registry
// on loopback the --token flag, $CAIRN_TOKEN or the .cairn/admin-token a
// local `cairn serve` wrote (as `cairn get` finds it); for another host only
// a token given for that same host's API (--lineage). The token never goes
// to any other registry.
type cairnKeychain struct {
	// token returns the --token flag's value and the server URL it is for.
	token func() (tok, server string)
}

func (k cairnKeychain) Resolve(res authn.Resource) (authn.Authenticator, error) {
	a, err := authn.DefaultKeychain.Resolve(res)
	if err != nil || a != authn.Anonymous {
		return a, err
	}
	host := res.RegistryStr()
	tok, server := k.token()
	if tok == "" {
		tok = os.Getenv("CAIRN_TOKEN")
	}
	if server == "" {
		server = os.Getenv("CAIRN_SERVER")
	}
	if isLoopbackHost(host) {
		if t := serverToken("http://"+host, tok); t != "" {
			return &authn.Basic{Username: "cairn", Password: t}, nil
		}
		return authn.Anonymous, nil
	}
	if u, err := url.Parse(server); err == nil && tok != "" && u.Host == host {
		return &authn.Basic{Username: "cairn", Password: tok}, nil
	}
	return authn.Anonymous, nil
}

func isLoopbackHost(hostport string) bool {
	h, _, err := net.SplitHostPort(hostport)
	if err != nil {
		h = hostport
	}
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}
