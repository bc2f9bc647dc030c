package store

import (
	"strconv"
	"strings"
)

// Args collects a statement's arguments while its text is written: Add
// appends a value and returns its placeholder ($1, $2, …), so that pieces
// of one statement written in different places number their arguments
// consistently.
type Args struct {
	values []any
}

// Add appends v and returns its placeholder.
func (a *Args) Add(v any) string {
	a.values = append(a.values, v)
	return "$" + strconv.Itoa(len(a.values))
}

// AddList appends each of values and returns their placeholders joined by
// commas, for an IN (…) list.
func (a *Args) AddList(values []string) string {
	marks := make([]string, len(values))
	for i, v := range values {
		marks[i] = a.Add(v)
	}
	return strings.Join(marks, ", ")
}

// Values returns the arguments in placeholder order.
func (a *Args) Values() []any { return a.values }
