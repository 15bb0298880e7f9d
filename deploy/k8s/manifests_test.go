// Package k8s_test renders every overlay with kubectl kustomize, decodes each object strictly
// (an unknown field fails) into the upstream API types, or for the operators' custom resources
// into small types of the fields used here, and holds the result to what the binaries read (the
// variables each lists with -config-vars and accepts with -check-config), the ports of the
// public contract, the shutdown bounds, the broker's queues and the database pools. No cluster
// is needed.
package k8s_test

import (
	"bytes"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/ordersaga/ordersaga/internal/stack"
	"github.com/ordersaga/ordersaga/pkg/broker"
	"github.com/ordersaga/ordersaga/pkg/catalog"
	"github.com/ordersaga/ordersaga/pkg/config"
	"github.com/ordersaga/ordersaga/pkg/database"
	"github.com/ordersaga/ordersaga/pkg/server"
)

// designPorts are the ports of DESIGN.md, by container port name.
var designPorts = map[string]map[string]int32{
	"order":     {"grpc": 50051, "http": 3001, "ops": 9101},
	"payment":   {"ops": 9102},
	"inventory": {"grpc": 50052, "ops": 9103},
	"shipping":  {"ops": 9104},
}

// grpcServices are the services whose startup probe asks grpc.health.v1.Health.
var grpcServices = []string{"order", "inventory"}

// The custom resources, with the fields these manifests use (json names as upstream).

type rabbitmqCluster struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta `json:"metadata"`
	Spec            struct {
		Replicas    *int32                      `json:"replicas"`
		Image       string                      `json:"image"`
		Resources   corev1.ResourceRequirements `json:"resources"`
		Persistence struct {
			Storage          *resource.Quantity `json:"storage"`
			StorageClassName *string            `json:"storageClassName,omitempty"`
		} `json:"persistence"`
		Rabbitmq struct {
			AdditionalConfig string `json:"additionalConfig"`
		} `json:"rabbitmq"`
	} `json:"spec"`
}

type pgCluster struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta `json:"metadata"`
	Spec            struct {
		Instances  int    `json:"instances"`
		ImageName  string `json:"imageName"`
		PostgreSQL struct {
			Synchronous *struct {
				Method string `json:"method"`
				Number int    `json:"number"`
			} `json:"synchronous"`
			Parameters map[string]string `json:"parameters"`
		} `json:"postgresql"`
		Bootstrap struct {
			InitDB struct {
				Database string `json:"database"`
				Owner    string `json:"owner"`
			} `json:"initdb"`
		} `json:"bootstrap"`
		Storage struct {
			Size resource.Quantity `json:"size"`
		} `json:"storage"`
		Resources corev1.ResourceRequirements `json:"resources"`
	} `json:"spec"`
}

type scaledObject struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta `json:"metadata"`
	Spec            struct {
		ScaleTargetRef struct {
			Name string `json:"name"`
		} `json:"scaleTargetRef"`
		MinReplicaCount *int32 `json:"minReplicaCount"`
		MaxReplicaCount *int32 `json:"maxReplicaCount"`
		PollingInterval *int32 `json:"pollingInterval"`
		CooldownPeriod  *int32 `json:"cooldownPeriod"`
		Advanced        *struct {
			HorizontalPodAutoscalerConfig struct {
				Behavior *autoscalingv2.HorizontalPodAutoscalerBehavior `json:"behavior"`
			} `json:"horizontalPodAutoscalerConfig"`
		} `json:"advanced"`
		Triggers []struct {
			Type              string                         `json:"type"`
			MetricType        autoscalingv2.MetricTargetType `json:"metricType,omitempty"`
			Metadata          map[string]string              `json:"metadata"`
			AuthenticationRef *struct {
				Name string `json:"name"`
			} `json:"authenticationRef"`
		} `json:"triggers"`
	} `json:"spec"`
}

type triggerAuthentication struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta `json:"metadata"`
	Spec            struct {
		SecretTargetRef []struct {
			Parameter string `json:"parameter"`
			Name      string `json:"name"`
			Key       string `json:"key"`
		} `json:"secretTargetRef"`
	} `json:"spec"`
}

// rendered is one overlay's objects by kind and name.
type rendered struct {
	namespaces   map[string]*corev1.Namespace
	deployments  map[string]*appsv1.Deployment
	services     map[string]*corev1.Service
	pdbs         map[string]*policyv1.PodDisruptionBudget
	configMaps   map[string]*corev1.ConfigMap
	secrets      map[string]*corev1.Secret
	rabbits      map[string]*rabbitmqCluster
	databases    map[string]*pgCluster
	scaled       map[string]*scaledObject
	triggerAuths map[string]*triggerAuthentication
	namespace    string // the one namespace every namespaced object is in
}

// decode strictly decodes doc into a new T and files it under its name in m.
func decode[T any](t *testing.T, doc []byte, m map[string]*T, name func(*T) metav1.ObjectMeta) {
	t.Helper()
	obj := new(T)
	if err := yaml.UnmarshalStrict(doc, obj); err != nil {
		t.Errorf("strict decoding:\n%s\n%v", firstLines(doc), err)
		return
	}
	meta := name(obj)
	if _, dup := m[meta.Name]; dup {
		t.Errorf("%T %s twice", obj, meta.Name)
	}
	m[meta.Name] = obj
}

func firstLines(doc []byte) string {
	lines := strings.SplitN(string(doc), "\n", 6)
	return strings.Join(lines[:min(len(lines), 5)], "\n")
}

// render runs kubectl kustomize on an overlay and decodes what it prints.
func render(t *testing.T, dir string) *rendered {
	t.Helper()
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Fatal("kubectl is needed to render the overlays (kubectl kustomize): ", err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(kubectl, "kustomize", dir)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kubectl kustomize %s: %v\n%s", dir, err, stderr.String())
	}
	r := &rendered{
		namespaces: map[string]*corev1.Namespace{}, deployments: map[string]*appsv1.Deployment{},
		services: map[string]*corev1.Service{}, pdbs: map[string]*policyv1.PodDisruptionBudget{},
		configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{},
		rabbits: map[string]*rabbitmqCluster{}, databases: map[string]*pgCluster{},
		scaled: map[string]*scaledObject{}, triggerAuths: map[string]*triggerAuthentication{},
	}
	namespaces := map[string]bool{}
	for doc := range bytes.SplitSeq(out, []byte("\n---\n")) {
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		var head struct {
			metav1.TypeMeta `json:",inline"`
			Metadata        metav1.ObjectMeta `json:"metadata"`
		}
		if err := yaml.Unmarshal(doc, &head); err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
		if head.Kind != "Namespace" {
			namespaces[head.Metadata.Namespace] = true
		}
		switch head.APIVersion + " " + head.Kind {
		case "v1 Namespace":
			decode(t, doc, r.namespaces, func(o *corev1.Namespace) metav1.ObjectMeta { return o.ObjectMeta })
		case "apps/v1 Deployment":
			decode(t, doc, r.deployments, func(o *appsv1.Deployment) metav1.ObjectMeta { return o.ObjectMeta })
		case "v1 Service":
			decode(t, doc, r.services, func(o *corev1.Service) metav1.ObjectMeta { return o.ObjectMeta })
		case "policy/v1 PodDisruptionBudget":
			decode(t, doc, r.pdbs, func(o *policyv1.PodDisruptionBudget) metav1.ObjectMeta { return o.ObjectMeta })
		case "v1 ConfigMap":
			decode(t, doc, r.configMaps, func(o *corev1.ConfigMap) metav1.ObjectMeta { return o.ObjectMeta })
		case "v1 Secret":
			decode(t, doc, r.secrets, func(o *corev1.Secret) metav1.ObjectMeta { return o.ObjectMeta })
		case "rabbitmq.com/v1beta1 RabbitmqCluster":
			decode(t, doc, r.rabbits, func(o *rabbitmqCluster) metav1.ObjectMeta { return o.Metadata })
		case "postgresql.cnpg.io/v1 Cluster":
			decode(t, doc, r.databases, func(o *pgCluster) metav1.ObjectMeta { return o.Metadata })
		case "keda.sh/v1alpha1 ScaledObject":
			decode(t, doc, r.scaled, func(o *scaledObject) metav1.ObjectMeta { return o.Metadata })
		case "keda.sh/v1alpha1 TriggerAuthentication":
			decode(t, doc, r.triggerAuths, func(o *triggerAuthentication) metav1.ObjectMeta { return o.Metadata })
		default:
			t.Errorf("%s: unexpected %s %s %s", dir, head.APIVersion, head.Kind, head.Metadata.Name)
		}
	}
	if len(namespaces) != 1 {
		t.Fatalf("%s: objects in namespaces %v, want one", dir, namespaces)
	}
	for ns := range namespaces {
		r.namespace = ns
	}
	if r.namespace == "" || r.namespaces[r.namespace] == nil {
		t.Errorf("%s: namespace %q is not set or not created", dir, r.namespace)
	}
	return r
}

func overlays(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir("overlays")
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, e := range entries {
		if e.IsDir() {
			dirs = append(dirs, filepath.Join("overlays", e.Name()))
		}
	}
	for _, want := range []string{"overlays/dev", "overlays/production"} {
		if !slices.Contains(dirs, want) {
			t.Errorf("no overlay %s", want)
		}
	}
	return dirs
}

// binary is a service and the variables it reads, as it lists them.
type binary struct {
	Name string
	Vars []config.Var
}

func TestMain(m *testing.M) {
	code := m.Run()
	stack.RemoveBinaries()
	os.Exit(code)
}

func TestOverlays(t *testing.T) {
	var binaries []binary
	for _, svc := range stack.Services {
		vars, err := stack.ConfigVars(svc)
		if err != nil {
			t.Fatalf("%s: %v", svc, err)
		}
		binaries = append(binaries, binary{Name: svc, Vars: vars})
	}
	for _, dir := range overlays(t) {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			t.Parallel()
			r := render(t, dir)
			for _, b := range binaries {
				t.Run(b.Name, func(t *testing.T) { checkService(t, r, b) })
			}
			checkBroker(t, r)
			if n := len(r.deployments); n != len(designPorts) {
				t.Errorf("%d Deployments, want one per service", n)
			}
		})
	}
}

func checkBroker(t *testing.T, r *rendered) {
	t.Helper()
	if len(r.rabbits) != 1 {
		t.Fatalf("%d RabbitmqClusters, want 1", len(r.rabbits))
	}
	for name, rmq := range r.rabbits {
		if rmq.Spec.Replicas == nil || *rmq.Spec.Replicas != 3 {
			t.Errorf("RabbitmqCluster %s: replicas %v, want 3 (quorum queues)", name, rmq.Spec.Replicas)
		}
		if rmq.Spec.Resources.Limits.Memory().IsZero() {
			t.Errorf("RabbitmqCluster %s: no memory limit", name)
		}
	}
}

// shutdownBound is the longest a service takes from SIGTERM to exit: its servers drain within
// server.ShutdownTimeout while consumers finish the batch in hand, each handler call bounded
// by broker.DefaultHandlerTimeout.
var shutdownBound = max(server.ShutdownTimeout, broker.DefaultHandlerTimeout)

func checkService(t *testing.T, r *rendered, b binary) {
	svc := b.Name
	d := r.deployments[svc]
	if d == nil {
		t.Fatalf("no Deployment %s", svc)
	}
	if d.Spec.Replicas == nil || *d.Spec.Replicas < 2 {
		t.Errorf("replicas %v, want at least 2", d.Spec.Replicas)
	}
	pod := d.Spec.Template
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil || !sel.Matches(labels.Set(pod.Labels)) || sel.Empty() {
		t.Errorf("selector %v does not select the pod template %v", d.Spec.Selector, pod.Labels)
	}
	if len(pod.Spec.Containers) != 1 || pod.Spec.Containers[0].Name != svc {
		t.Fatalf("want exactly one container named %s", svc)
	}
	c := pod.Spec.Containers[0]
	if !strings.HasSuffix(strings.Split(c.Image, ":")[0], "/"+svc) {
		t.Errorf("image %s is not %s's", c.Image, svc)
	}

	env := checkEnv(t, r, b, c)
	ports := checkPorts(t, b, c, env)
	checkProbes(t, svc, c, ports)
	checkShutdown(t, pod.Spec, c)
	checkPodSecurity(t, pod.Spec, c)
	checkServiceObject(t, r, svc, pod.Labels, ports)
	checkPDB(t, r, svc, pod.Labels)
	maxReplicas := checkScaling(t, r, svc, d, c)
	checkDatabase(t, r, b, c, maxReplicas)
	checkBrokerURL(t, r, c, env)
}

// placeholder stands for a Secret's value when the configuration is checked.
func placeholder(ref *corev1.SecretKeySelector) string {
	if ref.Key == "uri" {
		return "postgresql://app:secret@" + strings.TrimSuffix(ref.Name, "-app") + "-rw:5432/app"
	}
	return "secret"
}

var reference = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// checkEnv checks that the container sets only variables the binary reads (or parts that a
// later variable it reads is made of), that the ConfigMaps hold only such variables, that what
// points at localhost by default is set, and that the binary would start with the result. It
// returns the environment, Secrets replaced by placeholders.
func checkEnv(t *testing.T, r *rendered, b binary, c corev1.Container) map[string]string {
	t.Helper()
	reads := map[string]config.Var{}
	for _, v := range b.Vars {
		reads[v.Name] = v
	}
	env := map[string]string{}
	for _, from := range c.EnvFrom {
		switch {
		case from.ConfigMapRef != nil:
			cm := r.configMaps[from.ConfigMapRef.Name]
			if cm == nil {
				t.Errorf("envFrom: no ConfigMap %s", from.ConfigMapRef.Name)
				continue
			}
			for k, v := range cm.Data {
				if _, ok := reads[k]; !ok {
					t.Errorf("ConfigMap %s sets %s, which %s does not read", cm.Name, k, b.Name)
				}
				env[from.Prefix+k] = v
			}
		default:
			t.Errorf("envFrom %+v: only ConfigMaps (Secrets are referenced key by key)", from)
		}
	}
	parts := map[string]bool{} // variables set only to be referenced
	set := map[string]bool{}
	for _, e := range c.Env {
		if set[e.Name] {
			t.Errorf("%s set twice", e.Name)
		}
		set[e.Name] = true
		switch {
		case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
			env[e.Name] = placeholder(e.ValueFrom.SecretKeyRef)
		case e.ValueFrom != nil:
			t.Errorf("%s: only Secret references are expected", e.Name)
		default:
			env[e.Name] = reference.ReplaceAllStringFunc(e.Value, func(ref string) string {
				name := reference.FindStringSubmatch(ref)[1]
				v, ok := env[name]
				if !ok {
					t.Errorf("%s refers to %s, which is not set before it", e.Name, name)
				}
				delete(parts, name)
				return v
			})
		}
		if _, ok := reads[e.Name]; !ok {
			parts[e.Name] = true
		}
	}
	for name := range parts {
		t.Errorf("%s is set but %s does not read it, and no variable it reads refers to it", name, b.Name)
	}
	for _, v := range reads {
		if strings.Contains(v.Default, "localhost") && env[v.Name] == "" {
			t.Errorf("%s is not set: its default %s names localhost", v.Name, v.Default)
		}
	}
	if err := stack.CheckConfig(b.Name, env); err != nil {
		t.Errorf("%s would not start: %v", b.Name, err)
	}
	return env
}

// checkPorts checks that the container's ports are exactly the binary's listen addresses, named
// for them and equal to the contract's, and returns them by name.
func checkPorts(t *testing.T, b binary, c corev1.Container, env map[string]string) map[string]int32 {
	t.Helper()
	want := map[string]int32{}
	for _, v := range b.Vars {
		if !strings.HasSuffix(v.Name, "_ADDR") {
			continue
		}
		addr := cmpOr(env[v.Name], v.Default)
		_, p, err := net.SplitHostPort(addr)
		if err != nil {
			t.Fatalf("%s=%s: %v", v.Name, addr, err)
		}
		port, err := strconv.ParseInt(p, 10, 32)
		if err != nil {
			t.Fatalf("%s=%s: %v", v.Name, addr, err)
		}
		// ORDER_GRPC_ADDR → grpc
		name := strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(v.Name, strings.ToUpper(b.Name)+"_"), "_ADDR"))
		want[name] = int32(port)
	}
	got := map[string]int32{}
	for _, p := range c.Ports {
		if p.Protocol != "" && p.Protocol != corev1.ProtocolTCP {
			t.Errorf("port %s: protocol %s", p.Name, p.Protocol)
		}
		got[p.Name] = p.ContainerPort
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("container ports %v, the binary listens on %v", got, want)
	}
	if fmt.Sprint(want) != fmt.Sprint(designPorts[b.Name]) {
		t.Errorf("the binary listens on %v, DESIGN.md says %v", want, designPorts[b.Name])
	}
	return got
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// portOf resolves a probe's or Service's port, by number or by container port name.
func portOf(t *testing.T, p intstr.IntOrString, ports map[string]int32) int32 {
	t.Helper()
	if p.Type == intstr.Int {
		return p.IntVal
	}
	n, ok := ports[p.StrVal]
	if !ok {
		t.Errorf("port %q is not a container port", p.StrVal)
	}
	return n
}

func checkProbes(t *testing.T, svc string, c corev1.Container, ports map[string]int32) {
	t.Helper()
	httpProbe := func(kind string, p *corev1.Probe, path string) {
		if p == nil || p.HTTPGet == nil {
			t.Errorf("%s probe: want GET %s on the ops port", kind, path)
			return
		}
		if p.HTTPGet.Path != path || portOf(t, p.HTTPGet.Port, ports) != ports["ops"] {
			t.Errorf("%s probe: GET %s :%d, want %s on the ops port %d", kind, p.HTTPGet.Path,
				portOf(t, p.HTTPGet.Port, ports), path, ports["ops"])
		}
	}
	httpProbe("readiness", c.ReadinessProbe, "/readyz")
	httpProbe("liveness", c.LivenessProbe, "/healthz")
	// /readyz gives each check 2 seconds.
	if c.ReadinessProbe != nil && c.ReadinessProbe.TimeoutSeconds < 3 {
		t.Errorf("readiness timeout %ds, want more than /readyz's 2s", c.ReadinessProbe.TimeoutSeconds)
	}
	s := c.StartupProbe
	switch {
	case s == nil:
		t.Error("no startup probe: liveness would count while the database migrates")
	case slices.Contains(grpcServices, svc):
		if s.GRPC == nil || s.GRPC.Port != ports["grpc"] {
			t.Errorf("startup probe %+v, want gRPC health on %d", s.ProbeHandler, ports["grpc"])
		}
	default:
		httpProbe("startup", s, "/healthz")
	}
}

func checkShutdown(t *testing.T, pod corev1.PodSpec, c corev1.Container) {
	t.Helper()
	var preStop time.Duration
	if c.Lifecycle != nil && c.Lifecycle.PreStop != nil {
		if c.Lifecycle.PreStop.Sleep == nil {
			t.Error("preStop: the image has no shell; only a sleep action works")
		} else {
			preStop = time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
		}
	}
	need := preStop + shutdownBound + 5*time.Second
	grace := 30 * time.Second // Kubernetes' default
	if pod.TerminationGracePeriodSeconds != nil {
		grace = time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second
	}
	if grace < need {
		t.Errorf("terminationGracePeriodSeconds %v, want at least %v (preStop %v + shutdown bound %v + 5s)",
			grace, need, preStop, shutdownBound)
	}
}

func checkPodSecurity(t *testing.T, pod corev1.PodSpec, c corev1.Container) {
	t.Helper()
	if pod.SecurityContext == nil || pod.SecurityContext.RunAsNonRoot == nil || !*pod.SecurityContext.RunAsNonRoot {
		t.Error("pod does not require a non-root user")
	}
	sc := c.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("container: want a read-only root file system and no privilege escalation")
	}
	req, lim := c.Resources.Requests, c.Resources.Limits
	if req.Cpu().IsZero() || req.Memory().IsZero() || lim.Memory().IsZero() {
		t.Errorf("resources %+v: want CPU and memory requests and a memory limit", c.Resources)
	}
	if !lim.Memory().IsZero() && lim.Memory().Cmp(*req.Memory()) < 0 {
		t.Error("memory limit below the request")
	}
}

func checkServiceObject(t *testing.T, r *rendered, svc string, podLabels map[string]string, ports map[string]int32) {
	t.Helper()
	s := r.services[svc]
	if s == nil {
		t.Errorf("no Service %s", svc)
		return
	}
	if len(s.Spec.Selector) == 0 {
		t.Error("Service selects nothing")
	}
	for k, v := range s.Spec.Selector {
		if podLabels[k] != v {
			t.Errorf("Service selector %s=%s does not match the pods", k, v)
		}
	}
	got := map[string]int32{}
	for _, p := range s.Spec.Ports {
		if n := portOf(t, p.TargetPort, ports); n != p.Port {
			t.Errorf("Service port %s: %d → %d, want the same number as the container's", p.Name, p.Port, n)
		}
		got[p.Name] = p.Port
	}
	if fmt.Sprint(got) != fmt.Sprint(ports) {
		t.Errorf("Service ports %v, container ports %v", got, ports)
	}
}

func checkPDB(t *testing.T, r *rendered, svc string, podLabels map[string]string) {
	t.Helper()
	var found bool
	for _, p := range r.pdbs {
		sel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
		if err != nil || sel.Empty() || !sel.Matches(labels.Set(podLabels)) {
			continue
		}
		found = true
		if p.Spec.MaxUnavailable == nil || p.Spec.MaxUnavailable.IntValue() != 1 || p.Spec.MinAvailable != nil {
			t.Errorf("PodDisruptionBudget %s: want maxUnavailable 1", p.Name)
		}
	}
	if !found {
		t.Errorf("no PodDisruptionBudget selects %s's pods", svc)
	}
}

// checkScaling checks the service's ScaledObject and returns its maximum replica count.
func checkScaling(t *testing.T, r *rendered, svc string, d *appsv1.Deployment, c corev1.Container) int32 {
	t.Helper()
	so := r.scaled[svc]
	if so == nil {
		t.Errorf("no ScaledObject %s", svc)
		return *d.Spec.Replicas
	}
	if so.Spec.ScaleTargetRef.Name != d.Name {
		t.Errorf("ScaledObject scales %s", so.Spec.ScaleTargetRef.Name)
	}
	lo, hi := so.Spec.MinReplicaCount, so.Spec.MaxReplicaCount
	if lo == nil || hi == nil || *lo < 2 || *hi < *lo || *lo > *d.Spec.Replicas {
		t.Fatalf("ScaledObject replicas %v..%v: want 2 ≤ min ≤ the Deployment's %d ≤ … and min ≤ max", lo, hi, *d.Spec.Replicas)
	}
	var queues []string
	for _, tr := range so.Spec.Triggers {
		switch tr.Type {
		case "rabbitmq":
			m := tr.Metadata
			queues = append(queues, m["queueName"])
			if m["protocol"] != "amqp" || m["mode"] != "QueueLength" {
				t.Errorf("rabbitmq trigger %v: want protocol amqp, mode QueueLength", m)
			}
			if v, err := strconv.Atoi(m["value"]); err != nil || v < 1 {
				t.Errorf("rabbitmq trigger value %q", m["value"])
			}
			checkTriggerHost(t, r, m["host"])
			if tr.AuthenticationRef == nil || r.triggerAuths[tr.AuthenticationRef.Name] == nil {
				t.Errorf("rabbitmq trigger on %s: no TriggerAuthentication", m["queueName"])
				continue
			}
			for _, ref := range r.triggerAuths[tr.AuthenticationRef.Name].Spec.SecretTargetRef {
				if !isRabbitSecret(r, ref.Name) || (ref.Key != "username" && ref.Key != "password") || ref.Parameter != ref.Key {
					t.Errorf("TriggerAuthentication %+v: want the broker's username and password", ref)
				}
			}
		case "cpu":
			if tr.MetricType != autoscalingv2.UtilizationMetricType || c.Resources.Requests.Cpu().IsZero() {
				t.Error("cpu trigger: want Utilization of a CPU request")
			}
		default:
			t.Errorf("unexpected trigger %s", tr.Type)
		}
	}
	var want []string
	for _, sub := range catalog.SubscriptionsOf(svc) {
		want = append(want, sub.Queue())
	}
	slices.Sort(queues)
	slices.Sort(want)
	if !slices.Equal(queues, want) {
		t.Errorf("scales on queues %v, %s consumes %v", queues, svc, want)
	}
	return *hi
}

func isRabbitSecret(r *rendered, name string) bool {
	for rmq := range r.rabbits {
		if name == rmq+"-default-user" {
			return true
		}
	}
	return false
}

// checkTriggerHost checks that KEDA, which runs in its own namespace, is sent to the broker's
// Service in this one, without credentials in the manifest.
func checkTriggerHost(t *testing.T, r *rendered, host string) {
	t.Helper()
	u, err := url.Parse(host)
	if err != nil || u.Scheme != "amqp" || u.User != nil || u.Port() != "5672" {
		t.Errorf("trigger host %q: want amqp://<broker>.<namespace>.svc:5672/ without credentials", host)
		return
	}
	for rmq := range r.rabbits {
		if u.Hostname() == rmq+"."+r.namespace+".svc" || u.Hostname() == rmq+"."+r.namespace+".svc.cluster.local" {
			return
		}
	}
	t.Errorf("trigger host %s is not a RabbitmqCluster's Service in namespace %s", u.Hostname(), r.namespace)
}

// checkDatabase checks that the database URL comes from the Secret of a CloudNativePG Cluster
// that creates the binary's database, replicates synchronously and takes the connections of
// every replica's pool.
func checkDatabase(t *testing.T, r *rendered, b binary, c corev1.Container, maxReplicas int32) {
	t.Helper()
	name := strings.ToUpper(b.Name) + "_DATABASE_URL"
	var def string
	for _, v := range b.Vars {
		if v.Name == name {
			def = v.Default
		}
	}
	u, err := url.Parse(def)
	if err != nil || def == "" {
		t.Fatalf("%s: default %q", name, def)
	}
	wantDB := strings.TrimPrefix(u.Path, "/")
	var ref *corev1.SecretKeySelector
	for _, e := range c.Env {
		if e.Name == name && e.ValueFrom != nil {
			ref = e.ValueFrom.SecretKeyRef
		}
	}
	if ref == nil || ref.Key != "uri" || !strings.HasSuffix(ref.Name, "-app") {
		t.Fatalf("%s: want the uri of a CloudNativePG Cluster's <cluster>-app Secret", name)
	}
	pg := r.databases[strings.TrimSuffix(ref.Name, "-app")]
	if pg == nil {
		t.Fatalf("%s: no Cluster %s", name, strings.TrimSuffix(ref.Name, "-app"))
	}
	if pg.Spec.Bootstrap.InitDB.Database != wantDB {
		t.Errorf("Cluster %s creates database %q, want %q", pg.Metadata.Name, pg.Spec.Bootstrap.InitDB.Database, wantDB)
	}
	s := pg.Spec.PostgreSQL.Synchronous
	if pg.Spec.Instances < 2 || s == nil || s.Number < 1 || s.Number >= pg.Spec.Instances || s.Method != "any" && s.Method != "first" {
		t.Errorf("Cluster %s: %d instances, synchronous %+v: want synchronous replicas and a spare", pg.Metadata.Name, pg.Spec.Instances, s)
	}
	maxConns, err := strconv.Atoi(pg.Spec.PostgreSQL.Parameters["max_connections"])
	if err != nil {
		t.Errorf("Cluster %s: max_connections not set", pg.Metadata.Name)
	}
	// Each replica's pool, plus room for the operator, replication and ordersctl.
	if need := int(maxReplicas)*database.DefaultMaxConns + 20; maxConns < need {
		t.Errorf("Cluster %s: max_connections %d, %d replicas of %d connections need %d",
			pg.Metadata.Name, maxConns, maxReplicas, database.DefaultMaxConns, need)
	}
	if pg.Spec.Resources.Limits.Memory().IsZero() || pg.Spec.Storage.Size.IsZero() {
		t.Errorf("Cluster %s: want a memory limit and a storage size", pg.Metadata.Name)
	}
}

// checkBrokerURL checks that AMQP_URL names a RabbitmqCluster's Service and that its
// credentials come from that cluster's Secret.
func checkBrokerURL(t *testing.T, r *rendered, c corev1.Container, env map[string]string) {
	t.Helper()
	u, err := url.Parse(env["AMQP_URL"])
	if err != nil || u.Scheme != "amqp" {
		t.Fatalf("AMQP_URL %q", env["AMQP_URL"])
	}
	host := strings.TrimSuffix(strings.TrimSuffix(u.Hostname(), "."+r.namespace+".svc"), ".svc.cluster.local")
	if r.rabbits[host] == nil || u.Port() != "5672" {
		t.Errorf("AMQP_URL names %s, not a RabbitmqCluster's AMQP port", u.Host)
	}
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && strings.HasPrefix(e.Name, "AMQP_") &&
			e.ValueFrom.SecretKeyRef.Name != host+"-default-user" {
			t.Errorf("%s comes from %s, not %s-default-user", e.Name, e.ValueFrom.SecretKeyRef.Name, host)
		}
	}
}
