// A FIFO of calls linked through Call::next_waiting: calls parked for ring or buffer space.
// No allocation; the owner's lock guards it.
#pragma once

#include "fs/call.hpp"

namespace virtiofs::fs {

class WaitList {
 public:
  bool empty() const { return head_ == nullptr; }
  Call* front() const { return head_; }
  void push_back(Call& call) {
    call.next_waiting = nullptr;
    (tail_ ? tail_->next_waiting : head_) = &call;
    tail_ = &call;
  }
  Call* pop_front() {
    Call* c = head_;
    if (c) {
      head_ = c->next_waiting;
      if (!head_) tail_ = nullptr;
    }
    return c;
  }
  // Unlinks `call`; false when it is not on the list.
  bool remove(Call& call) {
    Call* prev = nullptr;
    for (Call* c = head_; c; prev = c, c = c->next_waiting) {
      if (c != &call) continue;
      (prev ? prev->next_waiting : head_) = c->next_waiting;
      if (tail_ == c) tail_ = prev;
      return true;
    }
    return false;
  }

 private:
  Call* head_ = nullptr;
  Call* tail_ = nullptr;
};

}  // namespace virtiofs::fs
