package blob

import "testing"

func TestParseEndpoint(t *testing.T) {
	t.Parallel()
	tests := []struct {
		endpoint   string
		useSSL     bool
		wantHost   string
		wantSecure bool
		wantErr    bool
	}{
		{"127.0.0.1:9000", false, "127.0.0.1:9000", false, false},
		{"s3.example.com", true, "s3.example.com", true, false},
		{"http://127.0.0.1:9000", true, "127.0.0.1:9000", false, false},
		{"https://s3.example.com", false, "s3.example.com", true, false},
		{"https://s3.example.com/", false, "s3.example.com", true, false},
		{"ftp://s3.example.com", false, "", false, true},
		{"https://s3.example.com/bucket", false, "", false, true},
		{"https://user:pw@s3.example.com", false, "", false, true},
		{"https://s3.example.com?x=1", false, "", false, true},
		{"http://", false, "", false, true},
		{"s3.example.com/path", false, "", false, true},
	}
	for _, tt := range tests {
		host, secure, err := parseEndpoint(tt.endpoint, tt.useSSL)
		if got, want := err != nil, tt.wantErr; got != want {
			t.Errorf("parseEndpoint(%q) error = %v, want error: %v", tt.endpoint, err, want)
			continue
		}
		if got, want := host, tt.wantHost; got != want {
			t.Errorf("parseEndpoint(%q) host = %q, want %q", tt.endpoint, got, want)
		}
		if got, want := secure, tt.wantSecure; got != want {
			t.Errorf("parseEndpoint(%q) secure = %v, want %v", tt.endpoint, got, want)
		}
	}
}

func TestTypeForKey(t *testing.T) {
	t.Parallel()
	tests := []struct{ key, want string }{
		{"images/u/j.png", "image/png"},
		{"images/u/j.PNG", "image/png"},
		{"a.jpeg", "image/jpeg"},
		{"a.jpg", "image/jpeg"},
		{"a.webp", "image/webp"},
		{"a", "application/octet-stream"},
		{"a.exe", "application/octet-stream"},
	}
	for _, tt := range tests {
		if got, want := typeForKey(tt.key), tt.want; got != want {
			t.Errorf("typeForKey(%q) = %q, want %q", tt.key, got, want)
		}
	}
}
