package tlsfiles

import "testing"

func TestCheckURL(t *testing.T) {
	for _, tc := range []struct {
		url      string
		insecure bool
		ok       bool
	}{
		{"https://example.com:7480", false, true},
		{"http://127.0.0.1:7480", false, true},
		{"http://localhost:7480", false, true},
		{"http://[::1]:7480", false, true},
		{"http://example.com:7480", false, false},
		{"http://192.168.1.10:7480", false, false},
		{"http://example.com:7480", true, true},
		{"ftp://example.com", true, false},
	} {
		if err := CheckURL(tc.url, tc.insecure); (err == nil) != tc.ok {
			t.Errorf("CheckURL(%s, %v) = %v, want ok %v", tc.url, tc.insecure, err, tc.ok)
		}
	}
}
