package blob

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// minSecretLen is the shortest HMAC key Local accepts: as long as the
// SHA-256 output, as RFC 2104 recommends.
const minSecretLen = 32

// LocalConfig configures a Local store.
type LocalConfig struct {
	// Dir is the directory that holds the objects; it is created (0700)
	// when missing.
	Dir string
	// Secret is the HMAC key that signs URLs, at least 32 bytes. Keep it
	// stable (see LoadOrCreateSecret) so that URLs survive restarts.
	Secret []byte
	// BasePath is the URL path under which Handler is mounted, such as
	// "/files": it starts with "/" and does not end with one.
	BasePath string
	// Now returns the current time; nil means time.Now. Tests set it to
	// move the clock.
	Now func() time.Time
	// Logger receives internal errors met while serving; nil discards them.
	Logger *slog.Logger
}

// Local is a Store that keeps objects as files in a directory and serves
// them through Handler at HMAC-signed, expiring URLs.
//
// An object under key "a/b.png" is the file Dir/a/b.png; its content type
// is kept in the sidecar file Dir/a/.b.png.type. Keys never have segments
// starting with ".", so sidecars and temporary files cannot collide with
// objects.
type Local struct {
	dir      string
	secret   []byte
	basePath string
	now      func() time.Time
	logger   *slog.Logger
}

var _ Store = (*Local)(nil)

// NewLocal checks cfg and returns a Local store, creating cfg.Dir when missing.
func NewLocal(cfg LocalConfig) (*Local, error) {
	if cfg.Dir == "" {
		return nil, errors.New("blob: local store needs a directory")
	}
	if len(cfg.Secret) < minSecretLen {
		return nil, fmt.Errorf("blob: local store secret has %d bytes, needs at least %d", len(cfg.Secret), minSecretLen)
	}
	if !strings.HasPrefix(cfg.BasePath, "/") || ValidateKey(strings.TrimPrefix(cfg.BasePath, "/")) != nil {
		return nil, fmt.Errorf("blob: local store base path %q must look like \"/files\"", cfg.BasePath)
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("blob: create local store directory: %w", err)
	}
	l := &Local{
		dir:      cfg.Dir,
		secret:   append([]byte(nil), cfg.Secret...),
		basePath: cfg.BasePath,
		now:      cfg.Now,
		logger:   cfg.Logger,
	}
	if l.now == nil {
		l.now = time.Now
	}
	if l.logger == nil {
		l.logger = slog.New(slog.DiscardHandler)
	}
	return l, nil
}

// Put writes data under key atomically: readers see the old object or the
// new one, never a part. The file and its directories are fsynced before
// Put returns.
func (l *Local) Put(ctx context.Context, key string, data []byte, contentType string) error {
	if err := ValidateKey(key); err != nil {
		return err
	}
	contentType, err := resolveContentType(key, contentType)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("blob: put %s: %w", key, err)
	}
	root, err := os.OpenRoot(l.dir)
	if err != nil {
		return fmt.Errorf("blob: put %s: open store directory: %w", key, err)
	}
	defer root.Close()

	name := filepath.FromSlash(key)
	dir := filepath.Dir(name)
	if err := root.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("blob: put %s: create directory: %w", key, err)
	}
	// The sidecar goes first: a crash between the two renames leaves the
	// previous object with the new type at worst, never an object without
	// a type that Get would have to guess.
	if err := writeFileAtomic(root, typeFileName(name), []byte(contentType)); err != nil {
		return fmt.Errorf("blob: put %s: write content type: %w", key, err)
	}
	if err := writeFileAtomic(root, name, data); err != nil {
		return fmt.Errorf("blob: put %s: %w", key, err)
	}
	// Sync every directory from the object's up to the store's, so that
	// directories MkdirAll just made are durable too.
	for d := dir; ; d = filepath.Dir(d) {
		if err := syncDir(root, d); err != nil {
			return fmt.Errorf("blob: put %s: %w", key, err)
		}
		if d == "." {
			break
		}
	}
	return nil
}

// Get opens the object under key, or returns ErrNotFound.
func (l *Local) Get(ctx context.Context, key string) (io.ReadCloser, Info, error) {
	if err := ValidateKey(key); err != nil {
		return nil, Info{}, err
	}
	if err := ctx.Err(); err != nil {
		return nil, Info{}, fmt.Errorf("blob: get %s: %w", key, err)
	}
	f, info, _, err := l.open(key)
	if err != nil {
		return nil, Info{}, err
	}
	return f, info, nil
}

// SignedURL returns BasePath/key?expires=<unix>&sig=<signature>, a path on
// Luna's own server that Handler serves until ttl passes (rounded up to
// the second). ttl must be positive and at most MaxTTL.
func (l *Local) SignedURL(ctx context.Context, key string, ttl time.Duration) (string, error) {
	if err := ValidateKey(key); err != nil {
		return "", err
	}
	if err := checkTTL(ttl); err != nil {
		return "", err
	}
	deadline := l.now().Add(ttl)
	expires := deadline.Unix()
	if deadline.Nanosecond() > 0 {
		expires++
	}
	urlPath := l.basePath + "/" + key
	expiresText := strconv.FormatInt(expires, 10)
	query := url.Values{
		"expires": {expiresText},
		"sig":     {base64.RawURLEncoding.EncodeToString(l.sign(urlPath, expiresText))},
	}
	return urlPath + "?" + query.Encode(), nil
}

// sign returns the HMAC-SHA256 of "GET\n" + urlPath + "\n" + expires.
func (l *Local) sign(urlPath, expires string) []byte {
	mac := hmac.New(sha256.New, l.secret)
	mac.Write([]byte("GET\n" + urlPath + "\n" + expires))
	return mac.Sum(nil)
}

// open opens the regular file that holds key's object and reads its
// content type. Missing objects, directories and anything else that is
// not a regular file are ErrNotFound.
func (l *Local) open(key string) (*os.File, Info, time.Time, error) {
	root, err := os.OpenRoot(l.dir)
	if err != nil {
		return nil, Info{}, time.Time{}, fmt.Errorf("blob: get %s: open store directory: %w", key, err)
	}
	defer root.Close()

	name := filepath.FromSlash(key)
	f, err := root.Open(name)
	if isNotExist(err) {
		return nil, Info{}, time.Time{}, fmt.Errorf("blob: get %s: %w", key, ErrNotFound)
	}
	if err != nil {
		return nil, Info{}, time.Time{}, fmt.Errorf("blob: get %s: %w", key, err)
	}
	stat, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, Info{}, time.Time{}, fmt.Errorf("blob: get %s: %w", key, err)
	}
	if !stat.Mode().IsRegular() {
		f.Close()
		return nil, Info{}, time.Time{}, fmt.Errorf("blob: get %s: not a regular file: %w", key, ErrNotFound)
	}
	contentType := typeForKey(key)
	switch data, err := root.ReadFile(typeFileName(name)); {
	case err == nil:
		contentType = string(data)
	case !isNotExist(err):
		f.Close()
		return nil, Info{}, time.Time{}, fmt.Errorf("blob: get %s: read content type: %w", key, err)
	}
	return f, Info{ContentType: contentType, Size: stat.Size()}, stat.ModTime(), nil
}

// typeFileName names the sidecar that holds the content type of the
// object stored in the file name.
func typeFileName(name string) string {
	return filepath.Join(filepath.Dir(name), "."+filepath.Base(name)+".type")
}

// isNotExist reports whether err means that a path is absent. ENOTDIR
// counts: it is what opening "a/b" answers when "a" is a file.
func isNotExist(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}

// writeFileAtomic writes data to a temporary file beside name, fsyncs it
// and renames it over name.
func writeFileAtomic(root *os.Root, name string, data []byte) (err error) {
	tmp, err := randomTempName(filepath.Dir(name))
	if err != nil {
		return err
	}
	f, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("create temporary file: %w", err)
	}
	defer func() {
		if err != nil {
			root.Remove(tmp) // best effort; the write already failed
		}
	}()
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write temporary file: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync temporary file: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close temporary file: %w", err)
	}
	if err := root.Rename(tmp, name); err != nil {
		return fmt.Errorf("rename temporary file: %w", err)
	}
	return nil
}

// randomTempName returns a fresh hidden name in dir for a temporary file.
func randomTempName(dir string) (string, error) {
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("random temporary name: %w", err)
	}
	return filepath.Join(dir, ".tmp-"+hex.EncodeToString(b[:])), nil
}

// syncDir fsyncs the directory dir so that renames inside it are durable.
func syncDir(root *os.Root, dir string) error {
	d, err := root.Open(dir)
	if err != nil {
		return fmt.Errorf("open directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

// LoadOrCreateSecret returns the URL-signing secret kept in the file at
// path, creating it with 32 random bytes (mode 0600, parent directories
// 0700) the first time. Keeping the secret in the data directory lets
// signed URLs survive restarts. Concurrent callers get the same secret.
func LoadOrCreateSecret(path string) ([]byte, error) {
	secret, err := readSecret(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return secret, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("blob: create secret directory: %w", err)
	}
	secret = make([]byte, minSecretLen)
	if _, err := rand.Read(secret); err != nil {
		return nil, fmt.Errorf("blob: generate secret: %w", err)
	}
	// Write a complete temporary file, then link it into place: a link
	// never replaces an existing file, so when two processes race, both
	// end up reading the one that won.
	tmp, err := os.CreateTemp(filepath.Dir(path), ".secret-*")
	if err != nil {
		return nil, fmt.Errorf("blob: create secret: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(secret); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("blob: write secret: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("blob: sync secret: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("blob: close secret: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return readSecret(path)
		}
		return nil, fmt.Errorf("blob: install secret: %w", err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync() // best effort: the secret is already in place
		d.Close()
	}
	return secret, nil
}

// readSecret reads a secret file and checks its length.
func readSecret(path string) ([]byte, error) {
	secret, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("blob: read secret: %w", err)
	}
	if len(secret) < minSecretLen {
		return nil, fmt.Errorf("blob: secret file %s has %d bytes, needs at least %d", path, len(secret), minSecretLen)
	}
	return secret, nil
}
