//go:build linux

package relay

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strings"
)

// Secrets outside the YAML file and argv (which ps shows to every user):
// auth_secret_file and users_file name files read at start and on every
// reload (so rotating a secret is: rewrite the file, SIGHUP), and the
// ISTHMUS_* environment variables below override the YAML file, as
// eturnal's and most container images' *_FILE conventions do (a
// Kubernetes Secret or a Docker secret mounted as a file, or an env var).
const (
	// EnvAuthSecret replaces auth_secrets with its one value.
	EnvAuthSecret = "ISTHMUS_AUTH_SECRET"
	// EnvAuthSecretFile sets auth_secret_file.
	EnvAuthSecretFile = "ISTHMUS_AUTH_SECRET_FILE"
	// EnvUsersFile sets users_file.
	EnvUsersFile = "ISTHMUS_USERS_FILE"
)

// ApplyEnv applies the ISTHMUS_* secret overrides that getenv reports
// (os.Getenv in the command). Empty values are ignored.
func (c *Config) ApplyEnv(getenv func(string) string) {
	if v := getenv(EnvAuthSecret); v != "" {
		c.AuthSecrets = []string{v}
	}
	if v := getenv(EnvAuthSecretFile); v != "" {
		c.AuthSecretFile = v
	}
	if v := getenv(EnvUsersFile); v != "" {
		c.UsersFile = v
	}
}

// maxSecretFile bounds a secrets file: a few thousand entries at most.
const maxSecretFile = 1 << 20

// readSecretLines returns the non-empty lines of a secrets file, without
// lines starting with '#' and surrounding blanks. field names the setting
// in errors, which never quote a line (it is a secret).
func readSecretLines(field, path string) ([]string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fieldErr(field, "%v", err)
	}
	if !st.Mode().IsRegular() || st.Size() > maxSecretFile {
		return nil, fieldErr(field, "%s must be a regular file of at most %d bytes", path, maxSecretFile)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fieldErr(field, "%v", err)
	}
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 4096), maxSecretFile)
	for n := 1; sc.Scan(); n++ {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		out = append(out, l)
	}
	if err := sc.Err(); err != nil {
		return nil, fieldErr(field, "%s: %v", path, err)
	}
	if len(out) == 0 {
		return nil, fieldErr(field, "%s holds no entry", path)
	}
	return out, nil
}

// fileSecrets returns auth_secrets and users with the entries of
// auth_secret_file and users_file added.
func (c *Config) fileSecrets() (secrets, users []string, err error) {
	secrets, users = c.AuthSecrets, c.Users
	if c.AuthSecretFile != "" {
		l, err := readSecretLines("auth_secret_file", c.AuthSecretFile)
		if err != nil {
			return nil, nil, err
		}
		secrets = append(append([]string(nil), secrets...), l...)
	}
	if c.UsersFile != "" {
		l, err := readSecretLines("users_file", c.UsersFile)
		if err != nil {
			return nil, nil, err
		}
		for i, u := range l {
			if !strings.Contains(u, ":") {
				return nil, nil, fmt.Errorf("%w: users_file: %s line %d is not name:password or name:key=hex", ErrConfig, c.UsersFile, i+1)
			}
		}
		users = append(append([]string(nil), users...), l...)
	}
	return secrets, users, nil
}
