// Client: event-loop integration (Options::app_reaps_completions). The session does the work
// (fs/completion.hpp has the rule); this maps the public queue numbers onto it.
#include "client/client_impl.hpp"
#include "virtiofs/client.hpp"

namespace virtiofs {

int Client::completion_fd(unsigned queue) const { return impl_->session->completion_fd(queue); }

size_t Client::process_completions(unsigned queue) {
  return impl_->session->process_completions(queue);
}

size_t Client::process_completions() {
  size_t n = 0;
  for (unsigned q = 0; q < impl_->session->num_request_queues(); ++q)
    n += impl_->session->process_completions(q);
  return n;
}

}  // namespace virtiofs
