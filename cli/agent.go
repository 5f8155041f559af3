package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/check"
	"github.com/mailcow-ha/mailcow-ha/agent/config"
	"github.com/mailcow-ha/mailcow-ha/agent/daemon"
	"github.com/mailcow-ha/mailcow-ha/agent/firewall"
	"github.com/mailcow-ha/mailcow-ha/agent/report"
)

// Agent runs the node agent (the systemd unit's ExecStart).
func Agent(ctx context.Context, args []string, stdio Stdio) int {
	return AgentWith(ctx, args, stdio, nil)
}

// AgentExtension adds flags to the agent command; the function it returns changes the agent's options after the
// flags are parsed. The component tests' own command (test/agentdouble) hands in its test doubles this way; the
// shipped command has none.
type AgentExtension func(fs *flag.FlagSet) func(o *daemon.Options)

// AgentWith is Agent with an extension (nil: none).
func AgentWith(ctx context.Context, args []string, stdio Stdio, extend AgentExtension) int {
	fs := newFlags("agent", "agent [--config PATH] [flags]", stdio)
	src := sourceFlags(fs)
	keepalivedBin := fs.String("keepalived", "keepalived", "keepalived binary")
	galeraMode := fs.String("galera", "", "\"systemd\": control mariadb.service (a node); \"child\": run mariadbd as the agent's child (the lab and the tests)")
	var apply func(o *daemon.Options)
	if extend != nil {
		apply = extend(fs)
	}
	if code, done := parseFlags(fs, args, stdio); done {
		return code
	}
	log := report.NewLogger(report.LogOptions{Stderr: stdio.Stderr})
	src.Stdin = stdio.Stdin
	if err := keepMetadata(ctx, log); err != nil {
		log.Error("agent stopped", "err", err)
		return ExitFailure
	}
	cfg, pl, err := loadConfig(ctx, *src)
	if err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			log.Error("invalid configuration: "+line, "event", "config_invalid")
		}
		return ExitUsage
	}
	// Which file the configuration came from (cloud-init's copy of the user-data on a node) and what it says.
	if cfg.Discovers() {
		log.Info("configuration read from "+pl.Name+": the node and its members come from the API", "source", pl.Name,
			"cluster", cfg.Cluster.Name)
	} else {
		log.Info("configuration read from "+pl.Name+" for node "+cfg.Node.Name, "source", pl.Name, "node", cfg.Node.Name,
			"cluster", cfg.Cluster.Name, "members", len(cfg.Cluster.Nodes))
	}
	reload := make(chan struct{}, 1)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for range hup {
			select {
			case reload <- struct{}{}:
			default:
			}
		}
	}()
	// $NOTIFY_SOCKET stays in the agent's environment; keepalived, mariadbd and the stack's commands are not the
	// unit's main process and do not inherit it (agent/child.Environ builds every child's environment).
	notifier, err := report.NotifierFromEnv()
	if err != nil {
		log.Warn("systemd watchdog setting ignored", "err", err)
	}
	o := daemon.Options{Config: cfg, Log: log, SecretOwner: os.Geteuid(), KeepalivedBin: *keepalivedBin, Notifier: notifier,
		Reload: reload,
		LoadConfig: func() (config.Config, error) {
			c, _, err := loadConfig(ctx, *src)
			return c, err
		},
		ReadBase: src.Read}
	switch m := daemon.GaleraMode(*galeraMode); m {
	case daemon.GaleraChild, daemon.GaleraSystemd:
		o.GaleraMode = m
	case daemon.GaleraNone:
		if apply == nil {
			log.Error("--galera: \"systemd\" (a node) or \"child\" (the lab)", "value", *galeraMode)
			return ExitUsage
		}
	default:
		log.Error("--galera: \"systemd\" or \"child\"", "value", *galeraMode)
		return ExitUsage
	}
	if apply != nil {
		apply(&o)
	}
	if err := daemon.Run(ctx, o); errors.Is(err, daemon.ErrRestart) {
		log.Info("agent stopped to be started again (exit status 75: systemd's RestartForceExitStatus)")
		return ExitRestart
	} else if err != nil {
		log.Error("agent stopped", "err", err)
		return ExitFailure
	}
	return ExitOK
}

// keepMetadata keeps the metadata service, which serves the user-data and any secret given inline there, to
// this agent's control group, before the configuration is read (from there, when cloud-init left no copy). On a
// machine without the appliance's firewall (the lab) it changes nothing. A firewall that refuses the rule stops the
// agent, as one that refuses the members' set does.
func keepMetadata(ctx context.Context, log *slog.Logger) error {
	cg, cgErr := firewall.OwnCgroup()
	applied, err := firewall.MetadataOnly(ctx, nil, cg)
	switch {
	case err != nil && cgErr != nil:
		return fmt.Errorf("%w (%w)", err, cgErr)
	case err != nil:
		return err
	case applied:
		log.Info("firewall: the metadata service answers this agent only", "cgroup", cg.Path)
	default:
		log.Info("firewall: no appliance firewall here (nft chain inet mailcow_ha metadata); the metadata service is not guarded")
	}
	return nil
}

// Check asks the agent for its verdict once, or with --watch keeps keepalived's track file; see check.Main. The
// appliance runs the same code as the small mailcow-ha-check command, which starts faster.
func Check(ctx context.Context, args []string, stdio Stdio) int { return check.Main(ctx, args, stdio) }

// Maintenance switches maintenance mode on every node: automatic actions pause, reporting goes on.
func Maintenance(_ context.Context, args []string, stdio Stdio) int {
	return agentVerb("maintenance", []string{"on", "off"}, args, stdio)
}

// Breaker resets this node's breaker: its takeover history is forgotten, and a tripped breaker lets it take
// MASTER again.
func Breaker(_ context.Context, args []string, stdio Stdio) int {
	return agentVerb("breaker", []string{"reset"}, args, stdio)
}

// Galera runs `mailcow-ha galera force-bootstrap`: this node's waiting member bootstraps a new Primary component
// from its own position at its next round (unless a peer runs one). Transactions that only a silent peer had are
// lost: it is for a peer that is gone for good, or positions that fork.
func Galera(_ context.Context, args []string, stdio Stdio) int {
	return agentVerb("galera", []string{"force-bootstrap"}, args, stdio)
}

// agentVerb runs `mailcow-ha NAME WORD [--socket PATH]`, WORD one of words, as the local command "NAME WORD" on
// the agent's socket.
func agentVerb(name string, words, args []string, stdio Stdio) int {
	usage := name + " " + strings.Join(words, "|") + " [--socket PATH]"
	fs := newFlags(name, usage, stdio)
	socket := fs.String("socket", config.Defaults().API.Socket, "the local agent's socket")
	if len(args) == 0 || !slices.Contains(words, args[0]) {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			fs.SetOutput(stdio.Stdout)
			fs.Usage()
			return ExitOK
		}
		fmt.Fprintln(stdio.Stderr, "Usage: mailcow-ha "+usage)
		return ExitUsage
	}
	word := args[0]
	if code, done := parseFlags(fs, args[1:], stdio); done {
		return code
	}
	return askAgent(*socket, name+" "+word, stdio)
}

// Switchover hands MASTER to another node: the old master demotes, then the new one takes over.
func Switchover(_ context.Context, args []string, stdio Stdio) int {
	fs := newFlags("switchover", "switchover [--to NODE] [--socket PATH]", stdio)
	to := fs.String("to", "", "the node to hand over to (default: the healthy peer with the highest priority)")
	socket := fs.String("socket", config.Defaults().API.Socket, "the local agent's socket")
	if code, done := parseFlags(fs, args, stdio); done {
		return code
	}
	return askAgent(*socket, strings.TrimSpace("switchover "+*to), stdio)
}

func askAgent(socket, line string, stdio Stdio) int {
	ans, err := check.Ask(socket, line, 30*time.Second)
	if err != nil {
		fmt.Fprintln(stdio.Stderr, err)
		return ExitFailure
	}
	word, rest, _ := strings.Cut(ans, " ")
	if word != "ok" {
		fmt.Fprintln(stdio.Stderr, errors.New(rest))
		return ExitFailure
	}
	fmt.Fprintln(stdio.Stdout, rest)
	return ExitOK
}
