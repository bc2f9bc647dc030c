package cli

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"luna/internal/accounts"
	"luna/internal/credits"
)

func runUsersList(ctx context.Context, env Env, args []string) error {
	fs := newFlagSet("users list", env.Getenv)
	var d dbFlags
	d.register(fs)
	limit := 100
	fs.IntVar(&limit, "limit", 100, "how many users, newest first")
	if err := parseFlags(fs, args, env.Stderr); err != nil {
		return err
	}
	svc, _, closeDB, err := d.openServices(ctx)
	if err != nil {
		return err
	}
	defer closeDB()
	users, err := svc.ListUsers(ctx, limit)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tEMAIL\tNAME\tPROVIDER\tBALANCE\tRESERVED\tAVAILABLE\tCREATED\tSTATUS")
	for _, u := range users {
		status := "active"
		if u.DeletedAt != nil {
			status = "deleted"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\n", u.ID, u.Email, u.Name, u.Provider,
			u.Credits.Balance, u.Credits.Reserved, u.Credits.Available, u.CreatedAt.Format(time.DateTime), status)
	}
	return tw.Flush()
}

func runCreditsGrant(ctx context.Context, env Env, args []string) error {
	fs := newFlagSet("credits grant", env.Getenv)
	var d dbFlags
	d.register(fs)
	var user, note, key string
	var amount int64
	fs.StringVar(&user, "user", "", "user id or email (required)")
	fs.Int64Var(&amount, "amount", 0, "credits to add (required, > 0)")
	fs.StringVar(&note, "note", "", "why, kept in the ledger")
	fs.StringVar(&key, "key", "", "idempotency key: re-running with the same key grants once")
	if err := parseFlags(fs, args, env.Stderr); err != nil {
		return err
	}
	if user == "" || amount <= 0 {
		fmt.Fprintln(env.Stderr, "luna credits grant: --user and a positive --amount are required")
		return ErrUsage
	}
	svc, ledger, closeDB, err := d.openServices(ctx)
	if err != nil {
		return err
	}
	defer closeDB()
	u, err := svc.FindUser(ctx, user)
	if err != nil {
		return fmt.Errorf("user %q: %w", user, err)
	}
	if u.DeletedAt != nil {
		return fmt.Errorf("user %s is deleted", u.ID)
	}
	if key == "" {
		key = "cli-grant:" + time.Now().UTC().Format(time.RFC3339Nano)
	}
	if _, err := ledger.Grant(ctx, credits.GrantRequest{UserID: u.ID, Amount: amount, IdempotencyKey: key, Reference: "cli", Note: note}); err != nil {
		return fmt.Errorf("grant: %w", err)
	}
	c, err := ledger.Balance(ctx, u.ID)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "granted %d credits to %s (%s): balance %d, available %d\n", amount, u.ID, u.Email, c.Balance, c.Available)
	return nil
}

func runCreditsAudit(ctx context.Context, env Env, args []string) error {
	fs := newFlagSet("credits audit", env.Getenv)
	var d dbFlags
	d.register(fs)
	if err := parseFlags(fs, args, env.Stderr); err != nil {
		return err
	}
	_, ledger, closeDB, err := d.openServices(ctx)
	if err != nil {
		return err
	}
	defer closeDB()
	report, err := ledger.Audit(ctx)
	if err != nil {
		return err
	}
	for _, m := range report.Mismatches {
		fmt.Fprintln(env.Stdout, "MISMATCH", m)
	}
	fmt.Fprintf(env.Stdout, "audited %d users and %d reservations: %d mismatches\n", report.Users, report.Reservations, len(report.Mismatches))
	if len(report.Mismatches) > 0 {
		return ErrAuditFailed
	}
	return nil
}

func runInvitesCreate(ctx context.Context, env Env, args []string) error {
	fs := newFlagSet("invites create", env.Getenv)
	var d dbFlags
	d.register(fs)
	var req accounts.InviteRequest
	count := 1
	fs.IntVar(&req.MaxUses, "uses", 1, "how many sign-ups each code allows")
	fs.Int64Var(&req.ExtraCredits, "credits", 0, "extra credits on top of the initial grant")
	fs.DurationVar(&req.TTL, "expires", 0, "validity, e.g. 720h; 0 = never expires")
	fs.StringVar(&req.Note, "note", "", "who the code is for")
	fs.IntVar(&count, "count", 1, "how many codes to make")
	if err := parseFlags(fs, args, env.Stderr); err != nil {
		return err
	}
	if req.MaxUses < 1 || req.ExtraCredits < 0 || req.TTL < 0 || count < 1 || count > 1000 {
		fmt.Fprintln(env.Stderr, "luna invites create: --uses >= 1, --credits >= 0, --expires >= 0 and 1 <= --count <= 1000")
		return ErrUsage
	}
	svc, _, closeDB, err := d.openServices(ctx)
	if err != nil {
		return err
	}
	defer closeDB()
	for range count {
		inv, err := svc.CreateInvite(ctx, req)
		if err != nil {
			return err
		}
		fmt.Fprintln(env.Stdout, inv.Code)
	}
	return nil
}

func runInvitesList(ctx context.Context, env Env, args []string) error {
	fs := newFlagSet("invites list", env.Getenv)
	var d dbFlags
	d.register(fs)
	if err := parseFlags(fs, args, env.Stderr); err != nil {
		return err
	}
	svc, _, closeDB, err := d.openServices(ctx)
	if err != nil {
		return err
	}
	defer closeDB()
	invites, err := svc.ListInvites(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CODE\tUSES\tEXTRA CREDITS\tCREATED\tEXPIRES\tNOTE")
	for _, inv := range invites {
		expires := "never"
		if inv.ExpiresAt != nil {
			expires = inv.ExpiresAt.Format(time.DateTime)
		}
		fmt.Fprintf(tw, "%s\t%d/%d\t%d\t%s\t%s\t%s\n", inv.Code, inv.Uses, inv.MaxUses, inv.ExtraCredits,
			inv.CreatedAt.Format(time.DateTime), expires, inv.Note)
	}
	return tw.Flush()
}
