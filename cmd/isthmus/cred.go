package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/isthmusrelay/isthmus/relay"
)

// credNow is the clock isthmus cred mints against; tests fix it to check a
// known vector.
var credNow = time.Now

// uriList is the repeatable --uri flag.
type uriList []string

func (u *uriList) String() string     { return strings.Join(*u, ",") }
func (u *uriList) Set(s string) error { *u = append(*u, s); return nil }

func init() {
	register("cred", "mint a TURN REST API credential (coturn use-auth-secret scheme)", runCred)
}

// runCred prints a time-limited credential for the TURN REST API scheme
// coturn's use-auth-secret and our auth_secrets accept: username
// "expiry:user", password base64(HMAC-SHA1(secret, username)) — what
// coturn users script and eturnal's "eturnalctl credentials" prints.
func runCred(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("isthmus cred", flag.ContinueOnError)
	fs.SetOutput(stderr)
	secret := fs.String("secret", "", "the shared `secret` (auth_secrets, coturn static-auth-secret); prefer --secret-file, argv is visible to other users")
	secretFile := fs.String("secret-file", "", "`file` holding the shared secret (one line; surrounding whitespace ignored)")
	user := fs.String("user", "", "user part of the username (quotas count per user); empty = expiry only")
	ttl := fs.Duration("ttl", 24*time.Hour, "how long the credential is valid")
	asJSON := fs.Bool("json", false, "print {\"username\",\"password\",\"ttl\",\"expires\"} (and \"uris\" with --uri) as JSON")
	var uris uriList
	fs.Var(&uris, "uri", "TURN `uri` added to the JSON output's \"uris\" (the WebRTC iceServers shape, e.g. turn:relay.example.net:3478?transport=udp); repeat")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitConfig
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "isthmus cred: unexpected argument %q\n", fs.Arg(0))
		return exitConfig
	}
	if (*secret == "") == (*secretFile == "") {
		fmt.Fprintln(stderr, "isthmus cred: give exactly one of --secret and --secret-file")
		return exitConfig
	}
	if *secretFile != "" {
		b, err := os.ReadFile(*secretFile)
		if err != nil {
			fmt.Fprintf(stderr, "isthmus cred: secret-file: %v\n", err)
			return exitConfig
		}
		*secret = strings.TrimSpace(string(b))
		if *secret == "" {
			fmt.Fprintf(stderr, "isthmus cred: secret-file: %s is empty\n", *secretFile)
			return exitConfig
		}
	}
	if *ttl <= 0 {
		fmt.Fprintf(stderr, "isthmus cred: ttl: must be > 0, got %s\n", *ttl)
		return exitConfig
	}
	if strings.Contains(*user, ":") {
		// The REST username is "expiry:user"; a colon in user would be
		// read as part of it by other servers.
		fmt.Fprintf(stderr, "isthmus cred: user: must not contain ':'\n")
		return exitConfig
	}
	expiry := credNow().Add(*ttl)
	username, password := relay.RESTCredential(*secret, *user, expiry)
	if *asJSON {
		out := map[string]any{
			"username": username, "password": password,
			"ttl": int64(ttl.Seconds()), "expires": expiry.UTC().Format(time.RFC3339),
		}
		if len(uris) > 0 {
			out["uris"] = []string(uris)
		}
		_ = json.NewEncoder(stdout).Encode(out)
		return exitOK
	}
	fmt.Fprintf(stdout, "username: %s\npassword: %s\n", username, password)
	return exitOK
}
