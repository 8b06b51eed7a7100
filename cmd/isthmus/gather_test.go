package main

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"testing"

	"github.com/isthmusrelay/isthmus/sdpcand"
)

func runCapture(t *testing.T, run func([]string, io.Writer, io.Writer) int, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestGatherCommandJSON(t *testing.T) {
	code, out, errs := runCapture(t, runGather, "--host", "127.0.0.1", "--host", "::1", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var cands []candidateJSON
	if err := json.Unmarshal([]byte(out), &cands); err != nil {
		t.Fatalf("not a JSON array: %v\n%s", err, out)
	}
	fams := map[string]bool{}
	for _, c := range cands {
		if c.Type != "host" || c.Protocol != "udp" || c.Component != 1 || c.Port == 0 || c.Priority == 0 || c.Foundation == "" {
			t.Errorf("candidate %+v", c)
		}
		fams[c.Family] = true
	}
	if len(cands) != 2 || !fams["IPv4"] || !fams["IPv6"] {
		t.Errorf("want one host candidate per family, got %+v", cands)
	}
}

func TestGatherCommandOffer(t *testing.T) {
	code, out, errs := runCapture(t, runGather, "--host", "::1", "--family", "6")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	sess, err := sdpcand.Parse([]byte(out))
	if err != nil {
		t.Fatalf("offer does not parse: %v\n%s", err, out)
	}
	if !sess.ICE() || len(sess.Media) != 1 || sess.Media[0].NetType != "IP6" || len(sess.Media[0].Candidates) != 1 {
		t.Errorf("offer:\n%s", out)
	}
}

func TestGatherCommandUsage(t *testing.T) {
	cases := []struct {
		name     string
		args     []string
		code     int
		inStderr string
	}{
		{"help", []string{"--help"}, 0, "usage: isthmus gather"},
		{"bad family", []string{"--family", "5"}, 2, "--family"},
		{"TURN without credentials", []string{"--turn", "turn:127.0.0.1:3478"}, 2, "username/password"},
		{"bad host", []string{"--host", "nope"}, 2, "--host"},
		{"stray argument", []string{"extra"}, 2, "unexpected argument"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errs := runCapture(t, runGather, tc.args...)
			if code != tc.code || !strings.Contains(errs, tc.inStderr) {
				t.Errorf("exit %d (want %d), stderr %q (want %q in it)", code, tc.code, errs, tc.inStderr)
			}
		})
	}
}
