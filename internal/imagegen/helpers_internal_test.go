package imagegen

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestCleanMessage(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("é", 400)
	tests := []struct {
		name, in, want string
	}{
		{"plain", "Image failed.", "Image failed."},
		{"whitespace and controls", " a\n\tb\r\n\x00c  ", "a b c"},
		{"invalid UTF-8", "bad \xff", "bad \uFFFD"},
		{"long", long, strings.Repeat("é", 299) + "…"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := cleanMessage(tt.in)
			if got != tt.want {
				t.Errorf("cleanMessage = %q, want %q", got, tt.want)
			}
			if n := utf8.RuneCountInString(got); n > maxMessageChars {
				t.Errorf("%d characters, want at most %d", n, maxMessageChars)
			}
		})
	}
}

func TestComfyValidationMessage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, body, want string
	}{
		{
			name: "node errors",
			body: `{"error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation", "details": "Value not in list: ckpt_name: 'x' not in []", "extra_info": {}},
			        "node_errors": {"30": {"errors": [{"type": "value_not_in_list", "message": "Value not in list", "details": "ckpt_name: 'x' not in []", "extra_info": {}}], "dependent_outputs": ["9"], "class_type": "CheckpointLoaderSimple"}}}`,
			want: "The image server rejected the workflow: Prompt outputs failed validation; node 30 (CheckpointLoaderSimple): Value not in list: ckpt_name: 'x' not in []",
		},
		{
			name: "whole-prompt error",
			body: `{"error": {"type": "invalid_prompt", "message": "Cannot execute because node Foo does not exist.", "details": "Node ID '#5'", "extra_info": {}}, "node_errors": {}}`,
			want: "The image server rejected the workflow: Cannot execute because node Foo does not exist.: Node ID '#5'",
		},
		{name: "string error", body: `{"error": "invalid prompt", "node_errors": []}`, want: "The image server rejected the workflow: invalid prompt"},
		{name: "not JSON", body: `<html>400</html>`, want: "The image server rejected the workflow."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := comfyValidationMessage([]byte(tt.body)); got != tt.want {
				t.Errorf("message = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestFirstComfyImage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, outputs string
		want          string
		wantOK        bool
	}{
		{"one", `{"9": {"images": [{"filename": "a.png", "subfolder": "", "type": "output"}]}}`, "a.png", true},
		{"numeric order", `{"10": {"images": [{"filename": "ten.png", "type": "output"}]}, "9": {"images": [{"filename": "nine.png", "type": "output"}]}}`, "nine.png", true},
		{"saved before preview", `{"8": {"images": [{"filename": "p.png", "type": "temp"}]}, "9": {"images": [{"filename": "s.png", "type": "output"}]}}`, "s.png", true},
		{"only a preview", `{"8": {"images": [{"filename": "p.png", "type": "temp"}]}}`, "p.png", true},
		{"other outputs", `{"12": {"text": ["hi"]}, "13": {"images": "odd"}}`, "", false},
		{"empty", `{}`, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var outputs map[string]json.RawMessage
			if err := json.Unmarshal([]byte(tt.outputs), &outputs); err != nil {
				t.Fatal(err)
			}
			img, ok := firstComfyImage(outputs)
			if img.Filename != tt.want || ok != tt.wantOK {
				t.Errorf("firstComfyImage = %q, %v, want %q, %v", img.Filename, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestDecodeBase64(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in, want string
		wantErr        bool
	}{
		{"padded", "aGVsbG8=", "hello", false},
		{"unpadded", "aGVsbG8", "hello", false},
		{"data URI", "data:image/png;base64,aGVsbG8=", "hello", false},
		{"garbage", "!!!", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := decodeBase64(tt.in)
			if (err != nil) != tt.wantErr || string(got) != tt.want {
				t.Errorf("decodeBase64 = %q, %v, want %q, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestRunpodJobError(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, raw, want string
	}{
		{"string", `"Workflow validation failed"`, "Workflow validation failed"},
		{"SDK exception JSON", `"{\"error_type\": \"<class 'ValueError'>\", \"error_message\": \"bad\", \"error_traceback\": \"Traceback\"}"`, "<class 'ValueError'>: bad"},
		{"object", `{"message": "m"}`, "m"},
		{"null", `null`, ""},
		{"absent", ``, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := runpodJobError(json.RawMessage(tt.raw)); got != tt.want {
				t.Errorf("runpodJobError = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestSniffImage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, data, want string
	}{
		{"PNG", "\x89PNG\r\n\x1a\n....", "image/png"},
		{"JPEG", "\xff\xd8\xff\xe0....", "image/jpeg"},
		{"WebP", "RIFF\x10\x00\x00\x00WEBPVP8L", "image/webp"},
		{"RIFF but not WebP", "RIFF\x10\x00\x00\x00WAVEfmt ", ""},
		{"HTML", "<html>", ""},
		{"empty", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := sniffImage([]byte(tt.data)); got != tt.want {
				t.Errorf("sniffImage = %q, want %q", got, tt.want)
			}
		})
	}
}
