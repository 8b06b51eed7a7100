// Package deploy holds no code: its tests check the deployment files next
// to them (systemd unit, example configuration, compose file, Kubernetes
// manifests, Prometheus rules) with the real tools where they exist.
package deploy

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/isthmusrelay/isthmus/relay"
)

// The example configuration loads through the relay's own loader (unknown
// keys are errors there) and validates.
func TestExampleRelayConfig(t *testing.T) {
	cfg, err := relay.LoadConfigFile("relay.yaml")
	if err != nil {
		t.Fatalf("deploy/relay.yaml: %v", err)
	}
	// auth_secret_file points at the production path; give it a file.
	f := filepath.Join(t.TempDir(), "turn-secrets")
	if err := os.WriteFile(f, []byte("s1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.AuthSecretFile = f
	if err := cfg.Validate(); err != nil {
		t.Errorf("deploy/relay.yaml does not validate: %v", err)
	}
	if len(cfg.AlternateServers) == 0 || cfg.TLSCert == "" || cfg.Metrics == "" {
		t.Errorf("example lost a section: %+v", cfg)
	}
}

// The ConfigMap's relay.yaml is a valid configuration too.
func TestKubernetesConfigMapLoads(t *testing.T) {
	for _, d := range yamlDocs(t, "kubernetes/relay-config.yaml") {
		if d["kind"] != "ConfigMap" {
			continue
		}
		body := d["data"].(map[string]any)["relay.yaml"].(string)
		p := filepath.Join(t.TempDir(), "relay.yaml")
		if err := os.WriteFile(p, []byte(body+"auth_secrets: [x]\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := relay.LoadConfigFile(p)
		if err != nil {
			t.Fatalf("ConfigMap relay.yaml: %v", err)
		}
		if err := cfg.Validate(); err != nil {
			t.Errorf("ConfigMap relay.yaml: %v", err)
		}
		return
	}
	t.Fatal("no ConfigMap in kubernetes/relay-config.yaml")
}

// yamlDocs decodes every document of a YAML file into generic maps.
func yamlDocs(t *testing.T, path string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var docs []map[string]any
	for {
		var d map[string]any
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		docs = append(docs, d)
	}
}

// dig walks nested maps and lists ("spec", "template", 0, ...).
func dig(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

// Every manifest parses and has what the API server requires of its kind;
// the DaemonSet runs on the host network with the node's IP from the
// downward API, probes /readyz, and its labels select its pods.
func TestKubernetesManifests(t *testing.T) {
	files, _ := filepath.Glob("kubernetes/*.yaml")
	if len(files) == 0 {
		t.Fatal("no manifests in deploy/kubernetes")
	}
	var ds map[string]any
	for _, f := range files {
		for i, d := range yamlDocs(t, f) {
			if d["apiVersion"] == nil || d["kind"] == nil || dig(d, "metadata", "name") == nil {
				t.Errorf("%s document %d: apiVersion, kind and metadata.name are required", f, i)
			}
			if d["kind"] == "DaemonSet" {
				ds = d
			}
		}
	}
	if ds == nil {
		t.Fatal("no DaemonSet")
	}
	pod := dig(ds, "spec", "template", "spec")
	if dig(pod, "hostNetwork") != true {
		t.Error("DaemonSet: hostNetwork must be true (a relay advertises the addresses it binds)")
	}
	sel, _ := dig(ds, "spec", "selector", "matchLabels").(map[string]any)
	labels, _ := dig(ds, "spec", "template", "metadata", "labels").(map[string]any)
	for k, v := range sel {
		if labels[k] != v {
			t.Errorf("selector %s=%v does not match the pod template's labels %v", k, v, labels)
		}
	}
	c := dig(pod, "containers", 0)
	foundHostIP := false
	for _, e := range dig(c, "env").([]any) {
		if dig(e, "valueFrom", "fieldRef", "fieldPath") == "status.hostIP" {
			foundHostIP = true
		}
	}
	if !foundHostIP {
		t.Error("DaemonSet: no env from the downward API's status.hostIP")
	}
	args := dig(c, "args").([]any)
	if !containsArg(args, "--relay-ip=$(NODE_IP)") {
		t.Errorf("DaemonSet args %v: the relay IP must be the node's", args)
	}
	if dig(c, "readinessProbe", "httpGet", "path") != "/readyz" {
		t.Error("DaemonSet: readinessProbe must GET /readyz")
	}
	if g, _ := dig(pod, "terminationGracePeriodSeconds").(int); g < 60 {
		t.Errorf("terminationGracePeriodSeconds %d: shorter than the drain", g)
	}
	// The args are the relay's real flags.
	for _, a := range args[1:] {
		name, _, _ := strings.Cut(strings.TrimPrefix(a.(string), "--"), "=")
		if !relayHasFlag(t, name) {
			t.Errorf("DaemonSet arg %v: isthmus relay has no flag %q", a, name)
		}
	}
}

func containsArg(l []any, s string) bool {
	for _, a := range l {
		if a == s {
			return true
		}
	}
	return false
}

var relayHelp string

// relayHasFlag asks the built binary's relay --help.
func relayHasFlag(t *testing.T, name string) bool {
	t.Helper()
	if relayHelp == "" {
		out, _ := exec.Command(isthmusBinary(t), "relay", "--help").CombinedOutput()
		relayHelp = string(out)
	}
	return strings.Contains(relayHelp, "  -"+name+" ") || strings.Contains(relayHelp, "  -"+name+"\n")
}

var builtBinary string

// isthmusBinary builds cmd/isthmus once for the tests.
func isthmusBinary(t *testing.T) string {
	t.Helper()
	if builtBinary != "" {
		return builtBinary
	}
	dir, err := os.MkdirTemp("", "isthmus-deploy-test")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "isthmus")
	out, err := exec.Command("go", "build", "-o", bin, "../cmd/isthmus").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	builtBinary = bin
	return bin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if builtBinary != "" {
		_ = os.RemoveAll(filepath.Dir(builtBinary))
	}
	os.Exit(code)
}

// The compose file parses, runs on the host network with a HEALTHCHECK
// through `isthmus health`, and mounts the example configuration.
func TestDockerCompose(t *testing.T) {
	d := yamlDocs(t, "docker-compose.yaml")[0]
	svc := dig(d, "services", "relay")
	if svc == nil {
		t.Fatal("no relay service")
	}
	if dig(svc, "network_mode") != "host" {
		t.Error("relay service: network_mode must be host")
	}
	hc, _ := dig(svc, "healthcheck", "test").([]any)
	if len(hc) < 3 || hc[0] != "CMD" || hc[2] != "health" {
		t.Errorf("healthcheck %v: want [CMD isthmus health ...]", hc)
	}
	for _, a := range dig(svc, "command").([]any)[1:] {
		name, _, _ := strings.Cut(strings.TrimPrefix(a.(string), "--"), "=")
		if !relayHasFlag(t, name) {
			t.Errorf("compose command %v: isthmus relay has no flag %q", a, name)
		}
	}
	df, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(df), `HEALTHCHECK`) || !strings.Contains(string(df), `"health"`) {
		t.Error("Dockerfile has no HEALTHCHECK through isthmus health")
	}
}

// systemd-analyze verify accepts the unit (with ExecStart pointed at a
// freshly built binary: verify checks that it is executable). It prints a
// line for every problem, and exits 0 for some of them, so any output fails.
func TestSystemdUnitVerifies(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("systemd-analyze not installed (apt-get install systemd)")
	}
	unit, err := os.ReadFile("systemd/isthmus-relay.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Type=notify\n", "ExecReload=/bin/kill -HUP $MAINPID", "WatchdogSec=", "NotifyAccess=main"} {
		if !bytes.Contains(unit, []byte(want)) {
			t.Errorf("unit lacks %q", want)
		}
	}
	bin := isthmusBinary(t)
	p := filepath.Join(t.TempDir(), "isthmus-relay.service")
	if err := os.WriteFile(p, bytes.ReplaceAll(unit, []byte("/usr/local/bin/isthmus"), []byte(bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("systemd-analyze", "verify", "--man=no", p).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	// The checker catches a broken unit.
	bad := filepath.Join(t.TempDir(), "isthmus-relay.service")
	if err := os.WriteFile(bad, bytes.Replace(unit, []byte("Type=notify"), []byte("Type=notifyy"), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, _ := exec.Command("systemd-analyze", "verify", "--man=no", bad).CombinedOutput(); len(bytes.TrimSpace(out)) == 0 {
		t.Error("systemd-analyze verify said nothing about Type=notifyy: the check proves nothing")
	}
}
