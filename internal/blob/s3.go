package blob

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// defaultRegion is used when S3Config.Region is empty. Presigning needs a
// region, and knowing it up front saves a bucket-location request.
const defaultRegion = "us-east-1"

// S3Config configures an S3 store.
type S3Config struct {
	// Endpoint is the S3 server: "host:port" (TLS chosen by UseSSL) or a
	// URL such as "https://s3.example.com" (TLS chosen by its scheme).
	Endpoint string
	// Bucket holds the objects.
	Bucket string
	// Region is the bucket's region; empty means "us-east-1". Set it for
	// AWS buckets elsewhere: requests are signed for this region.
	Region string
	// AccessKey and SecretKey are the credentials.
	AccessKey string
	SecretKey string
	// UseSSL selects HTTPS for a "host:port" Endpoint or PublicEndpoint.
	UseSSL bool
	// PathStyle forces path-style requests (https://host/bucket/key);
	// false lets minio-go choose (virtual-host style on AWS, path style on
	// other servers).
	PathStyle bool
	// Prefix is prepended, with a "/", to every key, so that several
	// deployments can share a bucket: Prefix "prod" stores key
	// "images/u/j.png" as "prod/images/u/j.png". Empty means none.
	Prefix string
	// PublicEndpoint, when set, is the S3 server as clients reach it, if
	// not under Endpoint's name (for example Endpoint "minio:9000" inside
	// a container network, PublicEndpoint "https://files.example.com").
	// Presigned URLs name this host; the signature covers the host, so it
	// must be the name the client will use. Same forms as Endpoint.
	PublicEndpoint string
	// CreateBucket makes NewS3 create Bucket when it is missing; otherwise
	// a missing bucket is an error.
	CreateBucket bool
}

// S3 is a Store that keeps objects in an S3-compatible bucket and hands
// out presigned GET URLs.
type S3 struct {
	client *minio.Client
	// presigner signs URLs for the public endpoint; it is client itself
	// when there is no PublicEndpoint. Presigning is local computation:
	// with the region known it sends no request.
	presigner *minio.Client
	bucket    string
	prefix    string
}

var _ Store = (*S3)(nil)

// NewS3 checks cfg, connects to the server and checks that the bucket
// exists, creating it when cfg.CreateBucket is set.
func NewS3(ctx context.Context, cfg S3Config) (*S3, error) {
	switch {
	case cfg.Endpoint == "":
		return nil, errors.New("blob: S3 store needs an endpoint")
	case cfg.Bucket == "":
		return nil, errors.New("blob: S3 store needs a bucket")
	case cfg.AccessKey == "" || cfg.SecretKey == "":
		return nil, errors.New("blob: S3 store needs an access key and a secret key")
	}
	prefix := strings.Trim(cfg.Prefix, "/")
	if prefix != "" {
		if err := ValidateKey(prefix); err != nil {
			return nil, fmt.Errorf("blob: S3 prefix: %w", err)
		}
		prefix += "/"
	}
	region := cfg.Region
	if region == "" {
		region = defaultRegion
	}

	client, err := newMinioClient(cfg, cfg.Endpoint, region)
	if err != nil {
		return nil, err
	}
	presigner := client
	if cfg.PublicEndpoint != "" {
		presigner, err = newMinioClient(cfg, cfg.PublicEndpoint, region)
		if err != nil {
			return nil, fmt.Errorf("blob: S3 public endpoint: %w", err)
		}
	}

	s := &S3{client: client, presigner: presigner, bucket: cfg.Bucket, prefix: prefix}
	if err := s.ensureBucket(ctx, region, cfg.CreateBucket); err != nil {
		return nil, err
	}
	return s, nil
}

// newMinioClient makes a client for endpoint with cfg's credentials.
func newMinioClient(cfg S3Config, endpoint, region string) (*minio.Client, error) {
	host, secure, err := parseEndpoint(endpoint, cfg.UseSSL)
	if err != nil {
		return nil, err
	}
	lookup := minio.BucketLookupAuto
	if cfg.PathStyle {
		lookup = minio.BucketLookupPath
	}
	client, err := minio.New(host, &minio.Options{
		Creds:        credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
		Secure:       secure,
		Region:       region,
		BucketLookup: lookup,
	})
	if err != nil {
		return nil, fmt.Errorf("blob: S3 client for %s: %w", host, err)
	}
	return client, nil
}

// parseEndpoint splits an endpoint given as "host:port" or as a URL into
// the host minio-go wants and whether to use TLS.
func parseEndpoint(endpoint string, useSSL bool) (host string, secure bool, err error) {
	if !strings.Contains(endpoint, "://") {
		if strings.ContainsAny(endpoint, "/?#@") {
			return "", false, fmt.Errorf("blob: S3 endpoint %q must be host:port or a URL", endpoint)
		}
		return endpoint, useSSL, nil
	}
	u, err := url.Parse(endpoint)
	if err != nil {
		return "", false, fmt.Errorf("blob: S3 endpoint: %w", err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return "", false, fmt.Errorf("blob: S3 endpoint %q: scheme must be http or https", endpoint)
	case u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "":
		return "", false, fmt.Errorf("blob: S3 endpoint %q must be a bare scheme://host[:port]", endpoint)
	}
	return u.Host, u.Scheme == "https", nil
}

// ensureBucket checks that the bucket exists, creating it if allowed.
func (s *S3) ensureBucket(ctx context.Context, region string, create bool) error {
	exists, err := s.client.BucketExists(ctx, s.bucket)
	if err != nil {
		return fmt.Errorf("blob: check S3 bucket %s: %w", s.bucket, err)
	}
	if exists {
		return nil
	}
	if !create {
		return fmt.Errorf("blob: S3 bucket %s does not exist (create it, or set CreateBucket)", s.bucket)
	}
	err = s.client.MakeBucket(ctx, s.bucket, minio.MakeBucketOptions{Region: region})
	// BucketAlreadyOwnedByYou: another process created it in the meantime.
	if err != nil && minio.ToErrorResponse(err).Code != "BucketAlreadyOwnedByYou" {
		return fmt.Errorf("blob: create S3 bucket %s: %w", s.bucket, err)
	}
	return nil
}

// objectName maps a key to the object's name in the bucket.
func (s *S3) objectName(key string) string {
	return s.prefix + key
}

// Put uploads data under key, replacing any object already there.
func (s *S3) Put(ctx context.Context, key string, data []byte, contentType string) error {
	if err := ValidateKey(key); err != nil {
		return err
	}
	contentType, err := resolveContentType(key, contentType)
	if err != nil {
		return err
	}
	// Over plain HTTP minio-go would sign the body in aws-chunked
	// encoding, and some servers (versitygw) then store and serve
	// "Content-Encoding: aws-chunked" to browsers. One plain PUT with an
	// unsigned payload, as minio-go sends over HTTPS anyway, avoids that;
	// Content-MD5 still lets the server check the bytes.
	_, err = s.client.PutObject(ctx, s.bucket, s.objectName(key), bytes.NewReader(data), int64(len(data)),
		minio.PutObjectOptions{ContentType: contentType, DisableContentSha256: true, SendContentMd5: true})
	if err != nil {
		return fmt.Errorf("blob: put %s: %w", key, err)
	}
	return nil
}

// Get opens the object under key, or returns ErrNotFound.
func (s *S3) Get(ctx context.Context, key string) (io.ReadCloser, Info, error) {
	if err := ValidateKey(key); err != nil {
		return nil, Info{}, err
	}
	obj, err := s.client.GetObject(ctx, s.bucket, s.objectName(key), minio.GetObjectOptions{})
	if err != nil {
		return nil, Info{}, fmt.Errorf("blob: get %s: %w", key, err)
	}
	// GetObject is lazy: Stat sends the request and reports whether the
	// object is there.
	stat, err := obj.Stat()
	if err != nil {
		obj.Close()
		if minio.ToErrorResponse(err).Code == "NoSuchKey" {
			return nil, Info{}, fmt.Errorf("blob: get %s: %w", key, ErrNotFound)
		}
		return nil, Info{}, fmt.Errorf("blob: get %s: %w", key, err)
	}
	return obj, Info{ContentType: stat.ContentType, Size: stat.Size}, nil
}

// SignedURL returns a presigned GET URL valid for ttl (at most MaxTTL).
// The response's Content-Type is the one implied by the key's extension
// when it has a known one (the stored type otherwise), and its
// Cache-Control lets only the browser keep it, for at most ttl. It sends
// no request and does not check that the object exists.
func (s *S3) SignedURL(ctx context.Context, key string, ttl time.Duration) (string, error) {
	if err := ValidateKey(key); err != nil {
		return "", err
	}
	if err := checkTTL(ttl); err != nil {
		return "", err
	}
	params := url.Values{}
	if contentType := typeForKey(key); contentType != defaultContentType {
		params.Set("response-content-type", contentType)
	}
	params.Set("response-cache-control", "private, max-age="+strconv.FormatInt(int64(ttl/time.Second), 10))
	u, err := s.presigner.PresignedGetObject(ctx, s.bucket, s.objectName(key), ttl, params)
	if err != nil {
		return "", fmt.Errorf("blob: presign %s: %w", key, err)
	}
	return u.String(), nil
}

// Delete removes the object under key; a missing object is not an error.
// Luna keeps its images; `luna check` removes the probe object it wrote.
func (s *S3) Delete(ctx context.Context, key string) error {
	if err := ValidateKey(key); err != nil {
		return err
	}
	if err := s.client.RemoveObject(ctx, s.bucket, s.objectName(key), minio.RemoveObjectOptions{}); err != nil {
		return fmt.Errorf("blob: delete %s: %w", key, err)
	}
	return nil
}
