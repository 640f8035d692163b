package dump

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/breachd/breachd"
)

// ParseManifest decodes a breach manifest: one JSON object with the fields of
// breachd.Breach (Have I Been Pwned's names). Unknown fields are an error, so
// a misspelt field is caught rather than silently dropped.
func ParseManifest(r io.Reader) (breachd.Breach, error) {
	var b breachd.Breach
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		return breachd.Breach{}, fmt.Errorf("manifest: %w", err)
	}
	if dec.More() {
		return breachd.Breach{}, fmt.Errorf("manifest: more than one JSON value; want one breach object")
	}
	if err := b.Validate(); err != nil {
		return breachd.Breach{}, fmt.Errorf("manifest: %w", err)
	}
	return b, nil
}

// ReadManifest reads and parses a manifest file.
func ReadManifest(path string) (breachd.Breach, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return breachd.Breach{}, err
	}
	// As an editor saves it: Notepad's byte order mark, or UTF-16.
	b, err := ParseManifest(text(bufio.NewReader(bytes.NewReader(data))))
	if err != nil {
		return b, fmt.Errorf("%s: %w", path, err)
	}
	return b, nil
}
