package sipcheck

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzCheck feeds whole messages, seeded with every torture message, and
// asserts a verdict always comes with a reason when it rejects.
func FuzzCheck(f *testing.F) {
	for _, dir := range []string{"torture", "rfc5118"} {
		files, _ := filepath.Glob(filepath.Join(testdata, dir, "*"))
		for _, name := range files {
			if filepath.Ext(name) == ".md" {
				continue
			}
			b, err := os.ReadFile(name)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r := Check(b)
		if r.Accept == (r.Reason != "") {
			t.Fatalf("accept=%v with reason %q", r.Accept, r.Reason)
		}
		if r.Accept && len(r.Vias) == 0 {
			t.Fatal("accepted a message without a Via")
		}
	})
}
