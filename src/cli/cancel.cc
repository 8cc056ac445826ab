// corral cancel ID: the `cancel` method of the task queue.
#include "cli/client.h"
#include "cli/commands.h"

namespace corral::cli {

int Cancel(int argc, char** argv) {
  return TaskIdCommand(
      "cancel",
      "usage: corral cancel [--socket PATH] ID [--json]\n\nCancels task ID: a queued task never "
      "runs; a running one has its cell ended (TERM, grace,\nKILL). Answers once the task is "
      "recorded cancelled; prints its state.\n",
      argc, argv);
}

}  // namespace corral::cli
