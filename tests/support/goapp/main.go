// A small web app instrumented the way Go services are: client_golang's promauto vectors
// wrapped around the handler by promhttp's middleware, and promhttp.Handler() for /metrics.
// Built offline from Debian's packages (tests/support/realapps.py: GoApp).
//
//	goapp -port P [-release ID] [-error-ratio R] [-latency D] [-rps N] [-warmup D -warmup-error-ratio R]
//
// `http_requests_total{code,method}` and `http_request_duration_seconds{method}` get a series
// on the first request with those label values (promhttp labels: code "200", method "get"):
// nothing before the first request, no code="500" while healthy. promhttp.Handler() adds
// promhttp_metric_handler_requests_total{code} for the scrapes themselves.
//
// Counted: GET / (the work). Not counted: /metrics, /health, /-/control (GET: the settings as
// JSON; POST: a JSON object of settings to change), POST /-/crash (exits with status 3).
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

type settings struct {
	Release          string  `json:"release"`
	ErrorRatio       float64 `json:"error_ratio"`
	LatencyS         float64 `json:"latency_s"`
	RPS              float64 `json:"rps"`
	TrafficURL       string  `json:"traffic_url"`
	WarmupS          float64 `json:"warmup_s"`
	WarmupErrorRatio float64 `json:"warmup_error_ratio"`
	HealthStatus     int     `json:"health_status"`
	PID              int     `json:"pid"`
}

type app struct {
	mu      sync.Mutex
	s       settings
	started time.Time
	served  int
	errors  int
}

var (
	requests = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "http_requests_total", Help: "HTTP requests served, by status code and method.",
	}, []string{"code", "method"})
	duration = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Name: "http_request_duration_seconds", Help: "Time spent serving a request.",
		Buckets: prometheus.DefBuckets,
	}, []string{"method"})
)

// next decides the status and latency of the next request of /: errors spread evenly, so a
// share of 0.4 is exactly 2 in every 5.
func (a *app) next() (int, time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	ratio := a.s.ErrorRatio
	if a.s.WarmupS > 0 && time.Since(a.started).Seconds() < a.s.WarmupS {
		ratio = a.s.WarmupErrorRatio
	}
	a.served++
	fail := a.errors < int(float64(a.served)*ratio+1e-9)
	if fail {
		a.errors++
		return http.StatusInternalServerError, time.Duration(a.s.LatencyS * float64(time.Second))
	}
	return http.StatusOK, time.Duration(a.s.LatencyS * float64(time.Second))
}

func (a *app) snapshot() settings {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.s
	s.PID = os.Getpid()
	return s
}

func (a *app) work(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/" {
		http.NotFound(w, r)
		return
	}
	status, latency := a.next()
	time.Sleep(latency)
	w.WriteHeader(status)
	fmt.Fprintln(w, a.snapshot().Release)
}

func (a *app) control(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost {
		a.mu.Lock()
		err := json.NewDecoder(r.Body).Decode(&a.s)
		a.mu.Unlock()
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(a.snapshot())
}

// traffic is the app's own clients: RPS GETs a second to TrafficURL (0: none).
func (a *app) traffic(port int) {
	client := &http.Client{Timeout: 5 * time.Second}
	next := time.Now()
	for {
		s := a.snapshot()
		if s.RPS <= 0 {
			time.Sleep(100 * time.Millisecond)
			next = time.Now()
			continue
		}
		next = next.Add(time.Duration(float64(time.Second) / s.RPS))
		if d := time.Until(next); d > 0 {
			time.Sleep(d)
		} else if d < -time.Second {
			next = time.Now()
		}
		url := s.TrafficURL
		if url == "" {
			url = fmt.Sprintf("http://127.0.0.1:%d/", port)
		}
		go func() {
			if resp, err := client.Get(url); err == nil {
				resp.Body.Close()
			}
		}()
	}
}

func main() {
	port := flag.Int("port", 0, "loopback port")
	a := &app{started: time.Now()}
	flag.StringVar(&a.s.Release, "release", "r1", "release id")
	flag.Float64Var(&a.s.ErrorRatio, "error-ratio", 0, "share of / answered 500")
	flag.Float64Var(&a.s.LatencyS, "latency", 0.002, "seconds / takes")
	flag.Float64Var(&a.s.RPS, "rps", 0, "own traffic, requests per second")
	flag.Float64Var(&a.s.WarmupS, "warmup", 0, "seconds after start with warmup-error-ratio")
	flag.Float64Var(&a.s.WarmupErrorRatio, "warmup-error-ratio", 0, "error share during warm-up")
	flag.Parse()
	a.s.HealthStatus = http.StatusOK

	mux := http.NewServeMux()
	mux.Handle("/", promhttp.InstrumentHandlerDuration(duration,
		promhttp.InstrumentHandlerCounter(requests, http.HandlerFunc(a.work))))
	mux.Handle("/metrics", promhttp.Handler())
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(a.snapshot().HealthStatus)
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/-/control", a.control)
	mux.HandleFunc("/-/crash", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "crashing")
		w.(http.Flusher).Flush()
		os.Exit(3)
	})
	go a.traffic(*port)
	log.Fatal(http.ListenAndServe(fmt.Sprintf("127.0.0.1:%d", *port), mux))
}
