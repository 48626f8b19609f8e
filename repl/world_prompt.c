/* world_prompt.c — see world_prompt.h. */
#include "repl/world_prompt.h"

#include <stdlib.h>
#include <string.h>

int world_prompt_encode(const model_bundle *b, const char *prompt, const prompt_example *shots, int n_shots,
                        char **text, tok_ids *ids, int *chat, rlhf_error *err) {
    prompt_request rq = {0};
    rq.input = prompt;
    rq.chat = b->chat_template != NULL;
    rq.chat_template = b->chat_template;
    rq.bos_token = b->bos_token;
    rq.eos_token = b->eos_token;
    rq.add_bos = b->add_bos;
    rq.examples = shots;
    rq.n_examples = n_shots;
    rq.few_shot = n_shots > 0;
    char *full = NULL;
    int add_bos = 0;
    int rc = prompt_assemble(&full, &add_bos, &rq, err);
    if (rc) return rc;
    memset(ids, 0, sizeof *ids);
    rc = tok_encode(b->tok, full, strlen(full), (add_bos ? TOK_ENCODE_ADD_BOS : 0) | (rq.chat ? TOK_ENCODE_ALLOW_SPECIAL : 0),
                    ids, err);
    if (chat) *chat = rq.chat;
    if (!rc && text) *text = full;
    else free(full);
    return rc;
}
