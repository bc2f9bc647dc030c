package store_test

import (
	"reflect"
	"testing"

	"luna/internal/store"
)

func TestArgsNumberPlaceholdersInOrder(t *testing.T) {
	var args store.Args
	got := []string{args.Add("a"), args.AddList([]string{"b", "c"}), args.AddList(nil), args.Add(4)}
	if want := []string{"$1", "$2, $3", "", "$4"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("placeholders %q, want %q", got, want)
	}
	if want := []any{"a", "b", "c", 4}; !reflect.DeepEqual(args.Values(), want) {
		t.Fatalf("values %v, want %v", args.Values(), want)
	}
}
