// corral retry ID: the `retry` method of the task queue.
#include "cli/client.h"
#include "cli/commands.h"

namespace corral::cli {

int Retry(int argc, char** argv) {
  return TaskIdCommand(
      "retry",
      "usage: corral retry [--socket PATH] ID [--json]\n\nRuns finished task ID again (whatever "
      "its outcome): back to the queue with one more attempt.\nPrints its state.\n",
      argc, argv);
}

}  // namespace corral::cli
