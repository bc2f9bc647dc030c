package models

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"luna/internal/store"
)

// syncLockKey is the PostgreSQL advisory lock that serialises Sync across
// instances. Upserts alone cannot deadlock each other, but two instances
// with different files (a rolling deploy) could each update a row the other
// is deactivating; the lock rules that out.
const syncLockKey int64 = 0x6c756e612d6d6f64 // "luna-mod"

// columns lists the models table's columns in the order scanModel reads them.
const columns = `id, display_name, description, base_url, api_key, served_model_name,
	context_tokens, max_output_tokens, millicredits_per_1k, system_prompt,
	connect_timeout_ms, first_token_timeout_ms, demo, active, sort_order`

// upsertSQL inserts a model or updates every field of an existing one. The
// WHERE clause skips rows that did not change, so updated_at records real
// changes; every column is NOT NULL, so <> is a safe comparison.
const upsertSQL = `
	INSERT INTO models (id, display_name, description, base_url, api_key, served_model_name,
		context_tokens, max_output_tokens, millicredits_per_1k, system_prompt,
		connect_timeout_ms, first_token_timeout_ms, demo, active, sort_order,
		created_at, updated_at)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $16)
	ON CONFLICT (id) DO UPDATE SET
		display_name = excluded.display_name,
		description = excluded.description,
		base_url = excluded.base_url,
		api_key = excluded.api_key,
		served_model_name = excluded.served_model_name,
		context_tokens = excluded.context_tokens,
		max_output_tokens = excluded.max_output_tokens,
		millicredits_per_1k = excluded.millicredits_per_1k,
		system_prompt = excluded.system_prompt,
		connect_timeout_ms = excluded.connect_timeout_ms,
		first_token_timeout_ms = excluded.first_token_timeout_ms,
		demo = excluded.demo,
		active = excluded.active,
		sort_order = excluded.sort_order,
		updated_at = excluded.updated_at
	WHERE models.display_name <> excluded.display_name
		OR models.description <> excluded.description
		OR models.base_url <> excluded.base_url
		OR models.api_key <> excluded.api_key
		OR models.served_model_name <> excluded.served_model_name
		OR models.context_tokens <> excluded.context_tokens
		OR models.max_output_tokens <> excluded.max_output_tokens
		OR models.millicredits_per_1k <> excluded.millicredits_per_1k
		OR models.system_prompt <> excluded.system_prompt
		OR models.connect_timeout_ms <> excluded.connect_timeout_ms
		OR models.first_token_timeout_ms <> excluded.first_token_timeout_ms
		OR models.demo <> excluded.demo
		OR models.active <> excluded.active
		OR models.sort_order <> excluded.sort_order`

// Sync makes the models table match models in one transaction: it inserts
// new models, updates every field of changed ones, and marks models that are
// in the table but not in the list inactive. It never deletes a row, because
// conversations reference them. Several instances may run it at once.
func Sync(ctx context.Context, db *store.DB, models []Model, now time.Time) error {
	nowMillis := store.NowMillis(now)
	err := db.InTx(ctx, func(tx *sql.Tx) error {
		if db.Dialect == store.Postgres {
			if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, syncLockKey); err != nil {
				return fmt.Errorf("lock models: %w", err)
			}
		}
		for _, m := range models {
			if err := upsert(ctx, tx, m, nowMillis); err != nil {
				return err
			}
		}
		return deactivateOthers(ctx, tx, models, nowMillis)
	})
	if err != nil {
		return fmt.Errorf("sync models: %w", err)
	}
	return nil
}

func upsert(ctx context.Context, tx *sql.Tx, m Model, nowMillis int64) error {
	_, err := tx.ExecContext(ctx, upsertSQL,
		m.ID, m.DisplayName, m.Description, m.BaseURL, m.APIKey, m.ServedModelName,
		m.ContextTokens, m.MaxOutputTokens, m.MillicreditsPer1K, m.SystemPrompt,
		m.ConnectTimeout.Milliseconds(), m.FirstTokenTimeout.Milliseconds(), m.Demo, m.Active, m.SortOrder,
		nowMillis)
	if err != nil {
		return fmt.Errorf("upsert model %q: %w", m.ID, err)
	}
	return nil
}

// deactivateOthers marks every active model whose id is not in keep inactive.
func deactivateOthers(ctx context.Context, tx *sql.Tx, keep []Model, nowMillis int64) error {
	var args store.Args
	query := `UPDATE models SET active = ` + args.Add(false) + `, updated_at = ` + args.Add(nowMillis) + ` WHERE active`
	if len(keep) > 0 {
		ids := make([]string, len(keep))
		for i, m := range keep {
			ids[i] = m.ID
		}
		query += ` AND id NOT IN (` + args.AddList(ids) + `)`
	}
	if _, err := tx.ExecContext(ctx, query, args.Values()...); err != nil {
		return fmt.Errorf("deactivate removed models: %w", err)
	}
	return nil
}

// ListActive returns the active models ordered by SortOrder, then ID.
func ListActive(ctx context.Context, db *store.DB) ([]Model, error) {
	rows, err := db.QueryContext(ctx, `SELECT `+columns+` FROM models WHERE active ORDER BY sort_order, id`)
	if err != nil {
		return nil, fmt.Errorf("list models: %w", err)
	}
	defer rows.Close()
	var models []Model
	for rows.Next() {
		m, err := scanModel(rows)
		if err != nil {
			return nil, fmt.Errorf("list models: %w", err)
		}
		models = append(models, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list models: %w", err)
	}
	return models, nil
}

// Get returns the model with the given id, active or not, or an error
// wrapping ErrNotFound. q is a *store.DB, *sql.DB or *sql.Tx.
func Get(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, id string) (Model, error) {
	m, err := scanModel(q.QueryRowContext(ctx, `SELECT `+columns+` FROM models WHERE id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Model{}, fmt.Errorf("model %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return Model{}, fmt.Errorf("get model %q: %w", id, err)
	}
	return m, nil
}

// scanModel reads one row selected with columns.
func scanModel(row interface{ Scan(...any) error }) (Model, error) {
	return ScanAfter(row)
}

// ColumnsOf lists the columns ScanAfter reads, qualified with alias, for
// a query that joins models to what it reads first (a conversation and its
// model in one statement).
func ColumnsOf(alias string) string {
	return alias + "." + strings.Join(strings.Fields(strings.ReplaceAll(columns, ",", " ")), ", "+alias+".")
}

// ScanAfter reads a model selected with ColumnsOf from row, after the
// caller's own leading columns, which it scans into leading.
func ScanAfter(row interface{ Scan(...any) error }, leading ...any) (Model, error) {
	var m Model
	var connectMillis, firstTokenMillis int64
	err := row.Scan(append(leading, &m.ID, &m.DisplayName, &m.Description, &m.BaseURL, &m.APIKey, &m.ServedModelName,
		&m.ContextTokens, &m.MaxOutputTokens, &m.MillicreditsPer1K, &m.SystemPrompt,
		&connectMillis, &firstTokenMillis, &m.Demo, &m.Active, &m.SortOrder)...)
	if err != nil {
		return Model{}, err
	}
	m.ConnectTimeout = time.Duration(connectMillis) * time.Millisecond
	m.FirstTokenTimeout = time.Duration(firstTokenMillis) * time.Millisecond
	return m, nil
}
