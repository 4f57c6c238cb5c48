// `mlabench serve`: an OpenAI-compatible HTTP server (cpp-httplib) over one Engine's live session
// (mlabench::LiveSession: one engine thread, a continuous batch that requests join as they come). The protocol
// (request validation, response shapes) is harness/serve/openai_protocol.h; this file is the HTTP side: routes,
// limits (body size, requests in flight), prompt tokenization, logprobs from logits, streaming, /metrics.
// docs/serve.md describes the endpoints and limits.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "harness/serve/openai_protocol.h"
#include "mlabench/engine.h"

namespace mlabench::serve {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8000;                     ///< 0: an ephemeral port (Server::port() says which)
  std::string model_name;              ///< the model id clients send and /v1/models lists (default: folder name)
  size_t max_body_bytes = 1 << 20;     ///< larger bodies get 413
  int64_t max_concurrent = 64;         ///< requests in flight (streams included); more get 429
  int64_t max_logprob_tokens = 2048;   ///< prompt + max_tokens of a request that asks for logprobs (host memory:
                                       ///< this many rows of vocab-size float logits per choice)
  int http_threads = 0;                ///< 0: max_concurrent + 8
  ProtocolLimits protocol{};
};

/// \brief Whether this build has the HTTP server (cpp-httplib was found at configure time).
bool server_available();

class Server {
 public:
  /// \brief Starts the engine's live session and binds host:port; throws Error (port in use, no cpp-httplib).
  /// The engine must outlive the server and must not be used by anyone else meanwhile.
  Server(Engine& engine, const ServerOptions& options);
  /// \brief Stops listening, then the live session.
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  /// \brief The bound port.
  int port() const;
  /// \brief Serves on a background thread; returns at once.
  void start();
  /// \brief Stops serving (any thread); start()'s thread ends.
  void stop();
  /// \brief Blocks until the listening thread ends (after stop()).
  void wait();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace mlabench::serve
