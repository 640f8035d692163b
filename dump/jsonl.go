package dump

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"unicode"
)

// A JSON Lines column is a path: its dot-separated names lead from the
// top-level object through nested ones to the string ("_source.email", an
// Elasticsearch dump's), unless the first row has a top-level key of that
// very name, dots and all: then it is that key. Each name matches a key as
// encoding/json matches a struct's field: exactly, else without regard to
// case.

// jsonPath is where each row's string is: the names from the top-level
// object down, the type a row is decoded into (nil: maps), and the column
// as given, for messages.
type jsonPath struct {
	column string
	names  []string
	row    reflect.Type
}

// newJSONPath reads column for rows like first (the first row).
func newJSONPath(column string, first []byte) jsonPath {
	p := jsonPath{column: column, names: strings.Split(column, ".")}
	if len(p.names) > 1 {
		var top map[string]json.RawMessage
		json.Unmarshal(first, &top) // nil if first is no object
		if _, literal := lookupFold(top, column); literal || slices.Contains(p.names, "") {
			p.names = []string{column}
		}
	}
	p.row = jsonRowType(p.names)
	return p
}

// jsonRowType is the struct a row is decoded into for names: nested
// structs of one pointer field each, tagged with the names, a *string at
// the end, so that encoding/json skips the row's other fields without
// keeping them (half the CPU of a map of them). Nil if a name is one a tag
// cannot carry (jsonField then decodes maps).
func jsonRowType(names []string) reflect.Type {
	t := reflect.TypeFor[*string]()
	for i := len(names) - 1; i >= 0; i-- {
		if names[i] == "" || strings.ContainsRune(names[i], ',') {
			return nil
		}
		for _, c := range names[i] {
			if !unicode.IsLetter(c) && !unicode.IsDigit(c) && !strings.ContainsRune("!#$%&()*+-./:;<=>?@[]^_{|}~ ", c) {
				return nil // encoding/json would ignore the tag
			}
		}
		t = reflect.StructOf([]reflect.StructField{{Name: "V", Type: t, Tag: reflect.StructTag("json:" + strconv.Quote(names[i]))}})
		if i > 0 {
			t = reflect.PointerTo(t)
		}
	}
	return t
}

// jsonField returns the string at p in line, or a reason there is none.
// The reason never holds the row's content.
func jsonField(line string, p jsonPath) (string, string) {
	if p.row != nil {
		v := reflect.New(p.row)
		if err := json.Unmarshal([]byte(line), v.Interface()); err != nil {
			if te := (*json.UnmarshalTypeError)(nil); errors.As(err, &te) && te.Field != "" {
				if strings.EqualFold(te.Field, strings.Join(p.names, ".")) {
					return "", fmt.Sprintf("the %q field is not a string", p.column)
				}
				return "", fmt.Sprintf("the %q field is not an object", te.Field)
			}
			return "", "malformed JSON: not one object"
		}
		for e := v.Elem(); ; {
			f := e.Field(0)
			if f.IsNil() {
				return "", fmt.Sprintf("no %q field", p.column)
			}
			if s, ok := f.Interface().(*string); ok {
				return *s, ""
			}
			e = f.Elem()
		}
	}
	raw, i, notObject := walk([]byte(line), p.names)
	switch {
	case notObject && i == 0:
		return "", "malformed JSON: not one object"
	case notObject:
		return "", fmt.Sprintf("the %q field is not an object", strings.Join(p.names[:i], "."))
	case i < len(p.names) || string(raw) == "null":
		return "", fmt.Sprintf("no %q field", p.column)
	}
	var v string
	if err := json.Unmarshal(raw, &v); err != nil {
		return "", fmt.Sprintf("the %q field is not a string", p.column)
	}
	return v, ""
}

// lookupFold finds key in m, exactly, else without regard to case.
func lookupFold(m map[string]json.RawMessage, key string) (json.RawMessage, bool) {
	if v, ok := m[key]; ok {
		return v, true
	}
	for k, v := range m {
		if strings.EqualFold(k, key) {
			return v, true
		}
	}
	return nil, false
}

// jsonHas reports whether line, a JSON object, has p's names as keys,
// whatever their values (a first row's null email is that row's
// rejection, not the dump's): false only where an object lacks a name.
func jsonHas(line []byte, p jsonPath) bool {
	_, i, notObject := walk(line, p.names)
	return i == len(p.names) || notObject // not an object: that row's rejection
}

// walk follows names from raw, an object, down through nested ones, each
// name matched by lookupFold. It returns the value the last one names, or
// where it stopped: the index of the name it could not follow, and whether
// that was for want of an object to look in (a null one has no keys).
func walk(raw []byte, names []string) (v json.RawMessage, stopped int, notObject bool) {
	v = raw
	for i, name := range names {
		var fields map[string]json.RawMessage
		if json.Unmarshal(v, &fields) != nil {
			return nil, i, true
		}
		var ok bool
		if v, ok = lookupFold(fields, name); !ok {
			return nil, i, false
		}
	}
	return v, len(names), false
}

// jsonHint names, for a first object without column, the path to pass
// instead if column is found one level down ("_source.email"), else "".
func jsonHint(first []byte, column string) string {
	var top map[string]json.RawMessage
	if json.Unmarshal(first, &top) != nil {
		return ""
	}
	for _, k := range slices.Sorted(maps.Keys(top)) {
		var inner map[string]json.RawMessage
		if json.Unmarshal(top[k], &inner) != nil {
			continue
		}
		if _, ok := lookupFold(inner, column); ok {
			return k + "." + column
		}
	}
	return ""
}

// noField is noColumnFlag for JSON Lines: the first object's fields, and
// the path to pass if the field was found one level down (path, else "").
func noField(fields []string, column, flag, what, like, path string) error {
	err := noNamed("the first JSON object has no field named", "its fields are", fields, column, flag, what, like)
	if path != "" {
		return fmt.Errorf("%w (it has %s: pass %s %s)", err, path, flag, path)
	}
	return err
}
