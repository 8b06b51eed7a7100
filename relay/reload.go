package relay

import (
	"reflect"
	"strings"
)

// restartTag marks a Config field that a running server cannot change
// (reload:"restart"): Reload leaves it as it is and names it in an error
// wrapping ErrRestartRequired.
const restartTag = "restart"

// restartOnly lists the indexes of Config's reload:"restart" fields.
var restartOnly = func() []int {
	var idx []int
	t := reflect.TypeFor[Config]()
	for i := range t.NumField() {
		if t.Field(i).Tag.Get("reload") == restartTag {
			idx = append(idx, i)
		}
	}
	return idx
}()

// yamlKey is the name a field has in the file and in errors.
func yamlKey(f reflect.StructField) string {
	k, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	return k
}

// restartFields names the restart-only fields in which next differs from
// running, in field order.
func restartFields(running, next Config) []string {
	rv, nv := reflect.ValueOf(running), reflect.ValueOf(next)
	var names []string
	for _, i := range restartOnly {
		if !sameValue(rv.Field(i), nv.Field(i)) {
			names = append(names, yamlKey(rv.Type().Field(i)))
		}
	}
	return names
}

// keepRestartFields returns next with every restart-only field taken from
// running: what the server keeps running with after a Reload.
func keepRestartFields(next, running Config) Config {
	nv, rv := reflect.ValueOf(&next).Elem(), reflect.ValueOf(running)
	for _, i := range restartOnly {
		nv.Field(i).Set(rv.Field(i))
	}
	return next
}

// sameValue treats an empty and a nil list as the same.
func sameValue(a, b reflect.Value) bool {
	if a.Kind() == reflect.Slice && a.Len() == 0 && b.Len() == 0 {
		return true
	}
	return reflect.DeepEqual(a.Interface(), b.Interface())
}
