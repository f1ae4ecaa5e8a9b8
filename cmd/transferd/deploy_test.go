package main

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// manifest is the part of a Kubernetes object the deploy tests read.
type manifest struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Data       map[string]string `yaml:"data"`
	StringData map[string]string `yaml:"stringData"`
	Spec       struct {
		Template struct {
			Metadata struct {
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"metadata"`
			Spec struct {
				TerminationGracePeriodSeconds int `yaml:"terminationGracePeriodSeconds"`
				Containers                    []struct {
					Ports []struct {
						Name          string `yaml:"name"`
						ContainerPort int    `yaml:"containerPort"`
					} `yaml:"ports"`
					Env []struct {
						Name string `yaml:"name"`
					} `yaml:"env"`
					ReadinessProbe probe `yaml:"readinessProbe"`
					LivenessProbe  probe `yaml:"livenessProbe"`
					StartupProbe   probe `yaml:"startupProbe"`
				} `yaml:"containers"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type probe struct {
	HTTPGet struct {
		Path string `yaml:"path"`
		Port string `yaml:"port"`
	} `yaml:"httpGet"`
	TimeoutSeconds   int `yaml:"timeoutSeconds"`
	PeriodSeconds    int `yaml:"periodSeconds"`
	FailureThreshold int `yaml:"failureThreshold"`
}

// readManifest returns the object of this kind and name in a file of
// deploy/.
func readManifest(t *testing.T, file, kind, name string) manifest {
	t.Helper()
	data, err := os.ReadFile("../../deploy/" + file)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var m manifest
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if m.Kind == kind && m.Metadata.Name == name {
			return m
		}
	}
	t.Fatalf("%s: no %s %s", file, kind, name)
	return manifest{}
}

// configVariables is every variable the configuration reads.
func configVariables() map[string]bool {
	vars := map[string]bool{}
	ct := reflect.TypeFor[config]()
	for i := range ct.NumField() {
		if name := ct.Field(i).Tag.Get("envconfig"); name != "" {
			vars[name] = true
		}
	}
	return vars
}

// TestDeployManifestsStart checks that the settings deploy/ gives a pod
// (the ConfigMap, the example Secret with its placeholders filled in, the
// StatefulSet's own variables, the image's) name only variables transferd
// reads and pass its start-up validation, and that the StatefulSet's
// ports, probes and grace period agree with them.
func TestDeployManifestsStart(t *testing.T) {
	vars := configVariables()
	cm := readManifest(t, "config.yaml", "ConfigMap", "transferd-config")
	secret := readManifest(t, "secret.example.yaml", "Secret", "transferd-secrets")
	sts := readManifest(t, "statefulset.yaml", "StatefulSet", "transferd")
	if len(sts.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("the StatefulSet has %d containers", len(sts.Spec.Template.Spec.Containers))
	}
	ctr := sts.Spec.Template.Spec.Containers[0]

	// The image's ENV (Dockerfile), then the StatefulSet's env, then the
	// ConfigMap and the Secret (envFrom), none overriding another here.
	env := map[string]string{"TRANSFERD_LISTEN_ADDR": ":8080", "TRANSFERD_DATA_DIR": "/data"}
	for _, e := range ctr.Env {
		env[e.Name] = "transferd-0" // TRANSFERD_INSTANCE_ID, the pod's name
	}
	// A placeholder becomes something of every form it stands in: a
	// password, a key, the hex of a sha256.
	filled := strings.Repeat("ab", 32)
	for _, src := range []map[string]string{cm.Data, secret.StringData} {
		for k, v := range src {
			env[k] = strings.ReplaceAll(v, "CHANGE-ME", filled)
		}
	}
	for k := range env {
		if !vars[k] {
			t.Errorf("deploy/ sets %s, which transferd does not read", k)
		}
	}
	for k := range vars {
		// Unset what deploy/ leaves out, so that the defaults apply
		// whatever the test's own environment holds.
		t.Setenv(k, "")
		if v, ok := env[k]; ok {
			t.Setenv(k, v)
		} else {
			_ = os.Unsetenv(k)
		}
	}
	cfg, err := loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.validate(); err != nil {
		t.Fatalf("transferd would refuse to start with deploy/'s settings:\n%v", err)
	}
	if cfg.demo() {
		t.Error("deploy/'s settings run transferd in demo mode")
	}

	ports := map[string]int{}
	for _, p := range ctr.Ports {
		ports[p.Name] = p.ContainerPort
	}
	for name, addr := range map[string]string{"http": cfg.ListenAddr, "callbacks": cfg.CallbackAddr, "admin": cfg.AdminAddr} {
		_, p, err := net.SplitHostPort(addr)
		if err != nil {
			t.Errorf("port %s: %q: %v", name, addr, err)
			continue
		}
		if n, _ := strconv.Atoi(p); n != ports[name] {
			t.Errorf("container port %s is %d, transferd listens on %s", name, ports[name], addr)
		}
	}
	for name, pr := range map[string]probe{"readiness": ctr.ReadinessProbe, "liveness": ctr.LivenessProbe, "startup": ctr.StartupProbe} {
		want := map[string]string{"readiness": "/readyz", "liveness": "/healthz", "startup": "/healthz"}[name]
		if pr.HTTPGet.Path != want || pr.HTTPGet.Port != "admin" {
			t.Errorf("%s probe: GET %s on port %q; want %s on admin", name, pr.HTTPGet.Path, pr.HTTPGet.Port, want)
		}
	}
	// /readyz waits up to 2 s for the store (api.handleReadyz); the
	// kubelet's timeout (1 s unless set) must not cut it short.
	if ctr.ReadinessProbe.TimeoutSeconds <= 2 {
		t.Errorf("readiness probe timeout %d s: /readyz may take 2 s", ctr.ReadinessProbe.TimeoutSeconds)
	}
	// transferd serves nothing until its store is open and migrated; the
	// liveness probe must not count meanwhile.
	if p := ctr.StartupProbe; time.Duration(p.PeriodSeconds*p.FailureThreshold)*time.Second < 5*time.Minute {
		t.Errorf("the startup probe gives transferd %d s to open its store; a migration may take minutes", p.PeriodSeconds*p.FailureThreshold)
	} else if time.Duration(p.PeriodSeconds*p.FailureThreshold)*time.Second < cfg.ShutdownDelay+cfg.ShutdownTimeout+lockPatienceMargin {
		t.Errorf("the startup probe gives transferd %d s to open its store, less than it waits for an exiting one's lock on the data directory", p.PeriodSeconds*p.FailureThreshold)
	}
	if a := sts.Spec.Template.Metadata.Annotations; a["prometheus.io/port"] != strconv.Itoa(ports["admin"]) || a["prometheus.io/path"] != "/metrics" {
		t.Errorf("scrape annotations %v: want /metrics on the admin port %d", a, ports["admin"])
	}
	// The process's own bound on its shutdown, with room for the store
	// to close and for the kubelet.
	if grace := time.Duration(sts.Spec.Template.Spec.TerminationGracePeriodSeconds) * time.Second; grace < cfg.ShutdownDelay+cfg.ShutdownTimeout+10*time.Second {
		t.Errorf("terminationGracePeriodSeconds %s: shorter than TRANSFERD_SHUTDOWN_DELAY (%s) plus TRANSFERD_SHUTDOWN_TIMEOUT (%s) plus 10 s", grace, cfg.ShutdownDelay, cfg.ShutdownTimeout)
	}
	// Behind the Service, requests still arrive for a few seconds after
	// SIGTERM: the delay keeps serving them.
	if cfg.ShutdownDelay <= 0 {
		t.Error("deploy/ sets no TRANSFERD_SHUTDOWN_DELAY: requests the Service still sends after SIGTERM are refused")
	}
}
