// Package stdio holds the standard streams that every command's Main takes, so that tests can hand in their
// own. It imports nothing else, so that the smallest command stays small.
package stdio

import "io"

// Stdio is a process's standard streams.
type Stdio struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
}
