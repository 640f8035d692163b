package canon

import (
	"strings"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// EmailGeneral is Email without the ASCII fast path, for FuzzEmailFastPath.
func EmailGeneral(raw string) (string, error) {
	s := strings.TrimSpace(raw)
	if !utf8.ValidString(s) {
		return "", invalid(notUTF8)
	}
	return slow(strings.ToLower(norm.NFC.String(s)))
}
