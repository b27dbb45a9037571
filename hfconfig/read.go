package hfconfig

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"gotune/jsondepth"
	"gotune/safefile"
	"reflect"
)

// readJSON reads the JSON file at path into v. A missing file comes back
// as safefile's error, which wraps fs.ErrNotExist, so that callers can
// tell an optional file's absence from a broken one.
func readJSON(path string, v any) error {
	b, err := readFile(path)
	if err != nil {
		return err
	}
	return decode(path, b, v)
}

// readFile reads a JSON file and bounds its nesting: callers decode some
// fields again (tokens, templates, module lists), so the bound is checked
// once before anything is decoded.
func readFile(path string) ([]byte, error) {
	b, err := safefile.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if err := jsondepth.Check(b, jsondepth.Default); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return b, nil
}

// decode unmarshals a file's bytes into v, naming the file in errors.
func decode(path string, b []byte, v any) error {
	if err := json.Unmarshal(b, v); err != nil {
		return decodeError(path, err)
	}
	return nil
}

// decodeError names the file and, for a value of the wrong type, the field
// in the file's own key names rather than encoding/json's Go struct names.
func decodeError(path string, err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		if te.Field == "" {
			return fmt.Errorf("%s: expected %s, got %s", path, jsonKind(te.Type), te.Value)
		}
		return fieldError(path, te.Field, "expected %s, got %s", jsonKind(te.Type), te.Value)
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("%s: not valid JSON (byte %d): %w", path, se.Offset, err)
	}
	return fmt.Errorf("%s: %w", path, err)
}

// jsonKind says in JSON's words what a Go type accepts.
func jsonKind(t reflect.Type) string {
	if t == nil {
		return "another value"
	}
	switch t.Kind() {
	case reflect.Pointer:
		return jsonKind(t.Elem())
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Map, reflect.Struct:
		return "an object"
	}
	return t.String()
}

// isNull reports whether a field is absent or JSON null, which the
// Hugging Face files use interchangeably for "not set".
func isNull(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) == 0 || string(raw) == "null"
}

// fieldError names the file and the field of a value a reader rejects.
func fieldError(path, field, format string, args ...any) error {
	return fmt.Errorf("%s: field %s: %s", path, field, fmt.Sprintf(format, args...))
}
