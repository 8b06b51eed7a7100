package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

// checkInput is the front end "isthmus sdp check" and "isthmus sip check"
// share: it parses "<name> check FILE|-" and reads the input (stdin for
// "-"), at most limit+1 bytes so an oversized input is seen as such. When
// ok is false the command ends with code; readErrCode is the code for an
// input that cannot be read.
func checkInput(name, usage string, args []string, stdin io.Reader, limit int64, readErrCode int, stderr io.Writer) (data []byte, code int, ok bool) {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return nil, 2, false
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stderr, usage)
		return nil, 0, false
	case "check":
	default:
		fmt.Fprintf(stderr, "%s: unknown action %q\n\n%s", name, args[0], usage)
		return nil, 2, false
	}
	fs := flag.NewFlagSet(name+" check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, 0, false
		}
		return nil, 2, false
	}
	if fs.NArg() != 1 {
		fmt.Fprintf(stderr, "%s check: want exactly one FILE or -, got %d arguments\n\n%s", name, fs.NArg(), usage)
		return nil, 2, false
	}
	data, err := readLimited(fs.Arg(0), stdin, limit)
	if err != nil {
		fmt.Fprintf(stderr, "%s check: %v\n", name, err)
		return nil, readErrCode, false
	}
	return data, 0, true
}

// readLimited reads the file called name, or r when name is "-", up to
// limit+1 bytes.
func readLimited(name string, r io.Reader, limit int64) ([]byte, error) {
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	return data, nil
}
