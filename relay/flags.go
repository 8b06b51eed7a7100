//go:build linux

package relay

import (
	"errors"
	"flag"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Flags are the command-line twins of Config's fields, generated from the
// fields' flag, arg and usage tags. Create them with BindFlags; after the
// flag set is parsed, Apply copies the flags given onto a Config, so the
// order is defaults, then the YAML file, then the flags.
type Flags struct {
	fs     *flag.FlagSet
	vals   Config         // the flags' values; defaults where not given
	fields map[string]int // flag name → Config field index
}

// BindFlags defines one flag per tagged Config field on fs, with defaults
// as the values its help shows. A list field's flag repeats; given at all,
// it replaces the file's (or the default) list as a whole. Each flag's help
// ends with its YAML key, e.g. "(YAML min_port)".
func BindFlags(fs *flag.FlagSet, defaults Config) *Flags {
	f := &Flags{fs: fs, vals: defaults, fields: map[string]int{}}
	v := reflect.ValueOf(&f.vals).Elem()
	for i := range v.NumField() {
		sf := v.Type().Field(i)
		name := sf.Tag.Get("flag")
		if name == "" {
			continue
		}
		usage := sf.Tag.Get("usage")
		if arg := sf.Tag.Get("arg"); arg != "" {
			// flag.PrintDefaults shows a back-quoted word as the value's name.
			usage = strings.Replace(usage, arg, "`"+arg+"`", 1)
		}
		usage += " (YAML " + yamlKey(sf) + ")"
		fs.Var(&fieldValue{v: v.Field(i)}, name, usage)
		f.fields[name] = i
	}
	return f
}

// Apply copies onto cfg the value of every flag given on the command line.
func (f *Flags) Apply(cfg *Config) {
	dst, src := reflect.ValueOf(cfg).Elem(), reflect.ValueOf(f.vals)
	f.fs.Visit(func(fl *flag.Flag) {
		if i, ok := f.fields[fl.Name]; ok {
			if src.Field(i).Kind() == reflect.Slice { // no aliasing with the flag's list
				dst.Field(i).Set(reflect.ValueOf(slices.Clone(src.Field(i).Interface().([]string))))
				return
			}
			dst.Field(i).Set(src.Field(i))
		}
	})
}

// fieldValue is a flag.Value on one Config field. The kinds Config uses are
// string (and string enums), int, bool, time.Duration and []string.
type fieldValue struct {
	v   reflect.Value
	set bool // a list flag given once: later ones append
}

func (f *fieldValue) String() string {
	if !f.v.IsValid() || f.v.IsZero() { // the zero fieldValue flag.PrintDefaults makes
		return ""
	}
	switch x := f.v.Interface().(type) {
	case []string:
		return strings.Join(x, ", ")
	case time.Duration:
		return x.String()
	}
	return fmt.Sprint(f.v.Interface())
}

func (f *fieldValue) Set(s string) error {
	switch {
	case f.v.Type() == durationType:
		d, err := time.ParseDuration(s)
		if err != nil {
			return errors.New("parse error")
		}
		f.v.SetInt(int64(d))
	case f.v.Kind() == reflect.String:
		f.v.SetString(s)
	case f.v.Kind() == reflect.Int:
		n, err := strconv.ParseInt(s, 0, strconv.IntSize)
		if err != nil {
			return errors.New("parse error")
		}
		f.v.SetInt(n)
	case f.v.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return errors.New("parse error")
		}
		f.v.SetBool(b)
	case f.v.Kind() == reflect.Slice:
		if !f.set {
			f.v.Set(reflect.ValueOf([]string(nil)))
			f.set = true
		}
		f.v.Set(reflect.Append(f.v, reflect.ValueOf(s)))
	default:
		return fmt.Errorf("relay: flag of unsupported type %s", f.v.Type())
	}
	return nil
}

// IsBoolFlag lets a bool field's flag stand alone (--allow-loopback-peers).
func (f *fieldValue) IsBoolFlag() bool { return f.v.IsValid() && f.v.Kind() == reflect.Bool }
