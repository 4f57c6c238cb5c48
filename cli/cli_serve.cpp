// mlabench serve: the OpenAI-compatible HTTP server (harness/serve/server.h, docs/serve.md) over the engine the
// usual model flags describe. Runs until SIGINT or SIGTERM; prints "listening on http://HOST:PORT" once it accepts
// connections (with --port 0, the port the system chose).
#include <csignal>
#include <cstdio>
#include <memory>
#include <pthread.h>

#include "cli/cli_run.h"
#include "harness/serve/server.h"

namespace mlabench::cli {

void add_serve_command(CLI::App& app, int* exit_code) {
  struct ServeArgs {
    ModelArgs model;
    serve::ServerOptions server;
  };
  auto a = std::make_shared<ServeArgs>();
  serve::ServerOptions& o = a->server;
  CLI::App* cmd = app.add_subcommand("serve", "OpenAI-compatible HTTP server (/v1/completions, /v1/chat/completions)");
  add_model_args(cmd, a->model, true);
  cmd->add_option("--host", o.host, "address to listen on")->capture_default_str();
  cmd->add_option("--port", o.port, "port (0: any free port, printed at start)")->capture_default_str()
      ->check(CLI::Range(0, 65535));
  cmd->add_option("--served-model-name", o.model_name, "the model id clients send (default: the model folder's name)");
  cmd->add_option("--max-body-bytes", o.max_body_bytes, "largest request body; larger ones get 413")
      ->capture_default_str()->check(CLI::Range(size_t{1024}, size_t{1} << 30));
  cmd->add_option("--max-concurrent", o.max_concurrent, "completion requests in flight (streams included); more get 429")
      ->capture_default_str()->check(CLI::Range(int64_t{1}, int64_t{65536}));
  cmd->add_option("--max-logprob-tokens", o.max_logprob_tokens,
                  "longest prompt + max_tokens of a request with logprobs (each position holds a vocabulary row of "
                  "float logits in host memory)")
      ->capture_default_str()->check(CLI::Range(int64_t{1}, int64_t{32768}));
  cmd->add_option("--max-tokens-limit", o.protocol.max_tokens, "largest max_tokens a request may ask")
      ->capture_default_str()->check(CLI::Range(int64_t{1}, int64_t{1} << 30));
  cmd->add_option("--max-n", o.protocol.max_n, "largest n (choices per prompt)")
      ->capture_default_str()->check(CLI::Range(int64_t{1}, int64_t{1024}));
  cmd->add_option("--http-threads", o.http_threads, "HTTP worker threads (0: --max-concurrent + 8)")
      ->capture_default_str()->check(CLI::Range(0, 4096));
  cmd->callback([a, exit_code]() {
    run(exit_code, [&] {
      MLABENCH_CHECK(serve::server_available(),
                     "this mlabench was built without cpp-httplib, so it has no HTTP server. HINT: install "
                     "libcpp-httplib-dev (tools/bootstrap.sh lists it) and configure the build again");
      // SIGINT/SIGTERM are taken by sigwait below: blocked before any thread starts, so every thread inherits it.
      sigset_t sigs;
      sigemptyset(&sigs);
      sigaddset(&sigs, SIGINT);
      sigaddset(&sigs, SIGTERM);
      pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
      std::unique_ptr<Engine> engine = open_engine(a->model.engine);
      serve::Server server(*engine, a->server);
      server.start();
      std::fprintf(stderr, "mlabench serve: model %s (%s), max context %lld tokens\n",
                   a->model.engine.model_dir.c_str(), to_string(a->model.engine.device).c_str(),
                   static_cast<long long>(engine->max_context()));
      std::printf("listening on http://%s:%d\n", a->server.host.c_str(), server.port());
      std::fflush(stdout);
      int sig = 0;
      sigwait(&sigs, &sig);
      std::fprintf(stderr, "mlabench serve: signal %d, stopping\n", sig);
      server.stop();
    });
  });
}

}  // namespace mlabench::cli
